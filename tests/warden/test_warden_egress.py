"""``--network allow`` in real sandboxes: real tools reach listed hosts and nothing else.

The origin servers (HTTP and HTTPS, with a throw-away CA) listen on the host's 127.0.0.2, which
the sandbox reaches only through the warden's egress proxy (its own 127.0.0.1 is its own
loopback, and NO_PROXY keeps that direct). Each tool's allowed fetch has a refused twin against
127.0.0.3, which is not listed, and a direct connection around the proxy must fail: the sandbox
has no interface but its loopback. bubblewrap runs as root and as the ordinary user; podman
runs the same proxy with its own (python3-minimal) image.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.egress.egress_harness import HELLO, PACKAGE, WHEEL, node_with_env_proxy, serving_site
from tests.support.sandbox_users import REPO, SandboxUser
from tests.warden.test_warden_podman import IMAGE, _image_present, container_names
from tests.warden.warden_harness import wrap

ORIGIN_HOST = "127.0.0.2"  # the host's loopback, as the allow-list names it
UNLISTED_HOST = "127.0.0.3"  # served by the same origins (every 127/8 address is), not listed


def node_mount() -> tuple[list[str], str | None]:
    """Volume options that make a NODE_USE_ENV_PROXY-capable node visible inside, and its path."""
    node = node_with_env_proxy()
    if node is None or not node.startswith(str(REPO)):
        return [], None
    return ["-v", f"{Path(node).parent}:/opt/node/bin:ro"], "/opt/node/bin/node"


def egress_script(http: int, https: int, node: str | None) -> str:
    """One shell script that runs every tool twice (allowed, then refused) and prints
    ``name=<exit status>`` markers; output of the tools themselves goes to files in /tmp."""
    allowed = f"http://{ORIGIN_HOST}:{http}"
    unlisted = f"http://{UNLISTED_HOST}:{http}"
    secure = f"https://{ORIGIN_HOST}:{https}"
    secure_unlisted = f"https://{UNLISTED_HOST}:{https}"
    urllib = (
        "import sys, urllib.request;"
        " print(urllib.request.urlopen(sys.argv[1]).read().decode(), end='')"
    )
    pip = (
        "python3 -m pip download -q --no-deps --disable-pip-version-check --no-cache-dir"
        " -d /tmp/dl{n} --index-url {url}/simple/ --trusted-host {host} " + PACKAGE
    )
    fetch = (
        "fetch(process.argv[1]).then(r => r.text()).then(t => process.stdout.write(t),"
        " e => { console.error(String(e.cause || e)); process.exit(3); })"
    )
    lines = [
        "echo interfaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')",
        f"curl -sS --fail {allowed}/hello.txt; echo curl_http=$?",
        f"curl -sS -o /tmp/refused.txt -w '%{{http_code}}\\n' {unlisted}/hello.txt;"
        " echo curl_http_refused=$?",
        "cat /tmp/refused.txt",
        f"curl -sS --fail --cacert /work/ca.pem {secure}/hello.txt; echo curl_https=$?",
        f"curl -sS --cacert /work/ca.pem {secure_unlisted}/hello.txt 2>/dev/null;"
        " echo curl_https_refused=$?",
        f"curl -sS --noproxy '*' --max-time 5 {allowed}/hello.txt 2>/dev/null; echo direct=$?",
        f'python3 -c "{urllib}" {allowed}/hello.txt; echo urllib=$?',
        f'python3 -c "{urllib}" {unlisted}/hello.txt 2>/dev/null; echo urllib_refused=$?',
        pip.format(n=1, url=allowed, host=ORIGIN_HOST) + "; echo pip=$?; ls /tmp/dl1",
        pip.format(n=2, url=unlisted, host=UNLISTED_HOST) + " >/dev/null 2>&1; echo pip_refused=$?",
        f"git clone -q {allowed}/repo.git /tmp/clone && cat /tmp/clone/README; echo git=$?",
        f"git clone -q {unlisted}/repo.git /tmp/clone2 2>/dev/null; echo git_refused=$?",
    ]
    if node is not None:
        lines += [
            f"{node} -e '{fetch}' {allowed}/hello.txt; echo node=$?",
            f"{node} -e '{fetch}' {unlisted}/hello.txt 2>/dev/null; echo node_refused=$?",
        ]
    return "\n".join(lines) + "\n"


def markers(stdout: str) -> dict[str, str]:
    found = {}
    for line in stdout.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.replace("_", "").isalpha():
            found[name] = value
    return found


async def test_tools_reach_listed_hosts_only(
    sandbox_user: SandboxUser, workspace: Path, tmp_path: Path
) -> None:
    mounts, node = node_mount()
    async with serving_site(tmp_path, host=ORIGIN_HOST) as origins:
        shutil.copy(origins.certificates.ca, workspace / "ca.pem")
        allow = [f"{ORIGIN_HOST}:{origins.http}", f"{ORIGIN_HOST}:{origins.https}"]
        result = await wrap(
            "--network",
            "allow",
            *[f"--allow-domain={entry}" for entry in allow],
            "-v",
            f"{workspace}:/work",
            *mounts,
            command=["sh", "-c", egress_script(origins.http, origins.https, node)],
            user=sandbox_user,
        )
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, stderr
    found = markers(stdout)
    assert found["interfaces"] == "lo", stdout  # no interface was added
    hello = HELLO.decode()
    for tool in ("curl_http", "curl_https", "urllib", "pip", "git", *(["node"] if node else [])):
        assert found[tool] == "0", (tool, stdout, stderr)
    assert stdout.count(hello) == 3 + (1 if node else 0), stdout  # curl x2, urllib, node
    assert "cloned through the egress proxy\n" in stdout
    assert WHEEL in stdout
    # Refusals are answers: curl saw the 403 and its body names the setting.
    assert found["curl_http_refused"] == "0"
    refusal = f"refused {UNLISTED_HOST}:{origins.http} (not in allow_domains; an IP address"
    assert f"403\ncurl_http_refused=0\n{refusal}" in stdout, stdout
    for tool in ("curl_https_refused", "urllib_refused", "pip_refused", "git_refused"):
        assert found[tool] != "0", (tool, stdout)
    if node:
        assert found["node_refused"] == "3", stdout
    assert found["direct"] == "7", stdout  # couldn't connect: nothing but the proxy goes out
    # The decision log on the warden's stderr: a line the first time in a second, then the
    # repeats summed up in one line when the second ends.
    assert f"egress: allowed {ORIGIN_HOST}:{origins.https} ({ORIGIN_HOST})" in stderr
    assert f"egress: {refusal}" in stderr
    refused = sum(
        1 + int(line.split(" and ")[-1].split()[0]) if " more time(s) in the last " in line else 1
        for line in stderr.splitlines()
        if "egress: refused" in line
    )
    assert refused >= 5 + (1 if node else 0), stderr  # one per refused tool


async def test_the_command_starts_only_once_the_proxy_listens(
    sandbox_user: SandboxUser, workspace: Path, tmp_path: Path
) -> None:
    """bwrap holds the command back (--block-fd) until the warden listens inside: a command's
    very first connection already finds the proxy."""
    async with serving_site(tmp_path, host=ORIGIN_HOST) as origins:
        result = await wrap(
            "--network",
            "allow",
            f"--allow-domain={ORIGIN_HOST}:{origins.http}",
            command=["curl", "-sS", "--fail", f"http://{ORIGIN_HOST}:{origins.http}/hello.txt"],
            user=sandbox_user,
        )
    assert (result.returncode, result.stdout) == (0, HELLO), result.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--network", "allow", "--allow-domain", "*"], "--allow-domain: allow_domains entry '*'"),
        (["--network", "allow", "--allow-domain", "*.com"], "'*.com'"),
        (["--network", "allow", "--allow-domain", "https://pypi.org/simple"], "pypi.org/simple"),
        (["--network", "allow", "--deny-domain", ""], "--deny-domain: deny_domains entry ''"),
        (["--allow-domain", "pypi.org"], "need --network allow"),
        (["--network", "allow", "--backend", "process"], "needs an isolating back end"),
    ],
)
async def test_bad_entries_are_refused_at_start_with_the_entry_named(
    options: list[str], message: str
) -> None:
    result = await wrap(*options, command=["true"])
    assert result.returncode in (2, 125), result
    assert message in result.stderr.decode(), result.stderr


async def test_host_network_warns_loudly() -> None:
    result = await wrap("--network", "host", command=["true"])
    assert result.returncode == 0
    assert b"WARNING: --network host: the sandbox shares this host's network" in result.stderr


RAW_CLIENT = """
import socket, sys
def status(url):
    with socket.create_connection(("127.0.0.1", 3128)) as s:
        s.sendall(f"GET {url} HTTP/1.0\\r\\n\\r\\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.split(b"\\r\\n", 1)[0].decode() + " " + data.rsplit(b"\\r\\n\\r\\n", 1)[-1].decode()
for url in sys.argv[1:3]:
    print(status(url), end="")
try:
    socket.create_connection((sys.argv[3], int(sys.argv[4])), timeout=5)
    print("direct=connected")
except OSError as error:
    print("direct=" + type(error).__name__)
"""


@pytest.mark.skipif(not _image_present(), reason=f"needs podman and {IMAGE} (.ci/install-podman)")
async def test_podman_reaches_listed_hosts_only(tmp_path: Path) -> None:
    async with serving_site(tmp_path, host=ORIGIN_HOST) as origins:
        before = container_names()
        result = await wrap(
            "--backend",
            "podman",
            "--network",
            "allow",
            f"--allow-domain={ORIGIN_HOST}:{origins.http}",
            command=[
                "python3",
                "-c",
                RAW_CLIENT,
                f"http://{ORIGIN_HOST}:{origins.http}/hello.txt",
                f"http://{UNLISTED_HOST}:{origins.http}/hello.txt",
                ORIGIN_HOST,
                str(origins.http),
            ],
            image=IMAGE,
        )
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, stderr
    lines = stdout.splitlines()
    assert lines[0] == "HTTP/1.1 200 OK " + HELLO.decode().rstrip("\n"), stdout
    assert lines[1].startswith(
        f"HTTP/1.1 403 Forbidden refused {UNLISTED_HOST}:{origins.http} (not in allow_domains"
    ), stdout
    assert lines[2] in ("direct=ConnectionRefusedError", "direct=OSError"), stdout
    assert f"egress: allowed {ORIGIN_HOST}:{origins.http}" in stderr
    assert container_names() - before == set()
