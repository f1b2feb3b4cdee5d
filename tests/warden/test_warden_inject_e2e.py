"""inject_secrets end to end through the warden's own command line: real bubblewrap sandboxes
(root and the ordinary user) whose clients — curl, Python's urllib (and requests/httpx where the
sandbox's Python has them), git, pip, Node's fetch — send the placeholder of GITHUB_TOKEN to a
real HTTPS origin on the host's 127.0.0.2, which answers ``/auth`` only to the real value: a 200
proves the warden's egress proxy replaced it. The warden re-originates TLS with normal
verification against ``SSL_CERT_FILE`` (the test's origin CA); the sandbox trusts the
interception CA only through what the warden put there (its bundle and trust variables).

Hostile twins in the same sandbox: GITHUB_TOKEN's placeholder sent to another intercepted host
(OTHER_TOKEN's), in a cleartext ``http://`` request, in the cleartext first flight of a plain
tunnel, and a CONNECT by IP literal to the address of ``localhost``, a name OTHER_TOKEN is
injected for: each refused with a 403 naming the secret, never its value.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from tests.egress.egress_harness import (
    PACKAGE,
    WHEEL,
    Certificates,
    build_site,
    make_certificates,
    start_origin,
)
from tests.support.sandbox_users import SandboxUser
from tests.warden.test_warden_egress import markers, node_mount
from tests.warden.test_warden_inject import Secret, injection_fd, make_secret
from tests.warden.test_warden_podman import IMAGE, _image_present, container_names
from tests.warden.warden_harness import wrap
from trio_sandbox.tls import InterceptionAuthority

ORIGIN_HOST = "127.0.0.2"  # GITHUB_TOKEN's host
OTHER_HOST = "127.0.0.3"  # OTHER_TOKEN's host: intercepted too, for another secret
LOCAL_NAME = "localhost"  # OTHER_TOKEN's too, by name; its address 127.0.0.1 allowed as well
PROXY = ("127.0.0.1", 3128)  # the warden's proxy, inside the sandbox


@attrs.frozen
class Site:
    """HTTPS origins of one site (one certificate for every address and ``localhost``) on
    127.0.0.2, 127.0.0.3 and 127.0.0.1, and a cleartext one on 127.0.0.2."""

    certificates: Certificates
    https: int
    other_https: int
    local_https: int
    http: int


@contextlib.asynccontextmanager
async def serving(directory: Path) -> AsyncIterator[Site]:
    site = directory / "site"
    await trio.to_thread.run_sync(build_site, site)
    certificates = await trio.to_thread.run_sync(
        make_certificates, directory, (LOCAL_NAME, ORIGIN_HOST, OTHER_HOST)
    )
    async with trio.open_nursery() as nursery:
        ports = [
            await start_origin(nursery, site, certificates, host=host)
            for host in (ORIGIN_HOST, OTHER_HOST, "127.0.0.1")
        ]
        http = await start_origin(nursery, site, host=ORIGIN_HOST)
        yield Site(certificates, ports[0], ports[1], ports[2], http)
        nursery.cancel_scope.cancel()


@attrs.frozen
class Injected:
    github: Secret
    other: Secret
    options: tuple[str, ...]
    fd: int


def inject(site: Site, workspace: Path, github: Secret, other: Secret) -> Injected:
    """The warden's options: GITHUB_TOKEN for 127.0.0.2:PORT, OTHER_TOKEN for 127.0.0.3:PORT and
    localhost:PORT, the cleartext origin and localhost's address allowed as plain tunnels, a
    CA limited to exactly the inject hosts, and the test's origin CA as the warden's trust."""
    github_hosts = [f"{ORIGIN_HOST}:{site.https}"]
    other_hosts = [f"{OTHER_HOST}:{site.other_https}", f"{LOCAL_NAME}:{site.local_https}"]
    authority = InterceptionAuthority.generate([*github_hosts, *other_hosts])
    fd = injection_fd(authority, github, other)
    shutil.copy(site.certificates.ca, workspace / "origin-ca.pem")
    options = (
        "--network",
        "allow",
        "--allow-domain",
        f"{ORIGIN_HOST}:{site.http}",
        "--allow-domain",
        f"127.0.0.1:{site.local_https}",
        "--inject-secret",
        f"GITHUB_TOKEN={','.join(github_hosts)}",
        "--inject-secret",
        f"OTHER_TOKEN={','.join(other_hosts)}",
        "--inject-fd",
        str(fd),
        "-v",
        f"{workspace}:/work",
    )
    return Injected(github, other, options, fd)


# Python clients inside: the placeholder from the environment, the answer's status and body.
CLIENT = """
import os, sys
client, url = sys.argv[1:]
headers = {"Authorization": "Bearer " + os.environ["GITHUB_TOKEN"]}
try:
    if client == "urllib":
        import urllib.error, urllib.request
        try:
            request = urllib.request.Request(url, headers=headers)
            answer = urllib.request.urlopen(request, timeout=30)
            status, body = answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read().decode()
    elif client == "requests":
        import requests
        answer = requests.get(url, headers=headers, timeout=30)
        status, body = answer.status_code, answer.text
    else:
        import httpx
        answer = httpx.get(url, headers=headers, timeout=30)
        status, body = answer.status_code, answer.text
except ImportError:
    print(client + "=absent")
    sys.exit(0)
print(f"{client}={status} {body.strip()}")
"""
NODE_FETCH = """
const url = process.argv[2];  // [node, script, url]
fetch(url, {headers: {Authorization: `token ${process.env.GITHUB_TOKEN}`}}).then(async (r) => {
    process.stdout.write(`node=${r.status} ${(await r.text()).trim()}\\n`);
}, (error) => {
    let cause = error;
    while (cause.cause) { cause = cause.cause; }
    process.stdout.write(`node=error ${cause.message}\\n`);
});
"""
# Raw requests to the proxy: what it answered (status line and body), one JSON line per case.
HOSTILE = """
import json, os, socket, sys
placeholder = os.environ["GITHUB_TOKEN"]
http_port, local_port = sys.argv[1:]
CRLF = "\\r\\n"

def talk(first, then=b""):
    received = b""
    with socket.create_connection(("127.0.0.1", 3128), timeout=30) as sock:
        sock.sendall(first)
        while then and not received.endswith(b"\\r\\n\\r\\n"):
            received += sock.recv(1)  # the CONNECT's answer, then what goes through the tunnel
        sock.sendall(then)
        while chunk := sock.recv(65536):
            received += chunk
    return received.decode("latin-1")

def message(first, *fields):
    return CRLF.join([first, *fields, "", ""]).encode()

origin = f"127.0.0.2:{http_port}"
bearer = f"Authorization: Bearer {placeholder}"
head = message("GET /auth HTTP/1.1", f"Host: {origin}", bearer, "Connection: close")
local = f"127.0.0.1:{local_port}"
cases = {
    "cleartext": talk(head.replace(b"GET /auth", f"GET http://{origin}/auth".encode(), 1)),
    "tunnel_cleartext": talk(message(f"CONNECT {origin} HTTP/1.1", f"Host: {origin}"), head),
    "by_address": talk(message(f"CONNECT {local} HTTP/1.1", f"Host: {local}")),
}
print("hostile=" + json.dumps(cases))
"""


def inside_script(site: Site, node: str | None) -> str:
    secure = f"https://{ORIGIN_HOST}:{site.https}"
    other = f"https://{OTHER_HOST}:{site.other_https}"
    pip = (
        "python3 -m pip download -q --no-deps --disable-pip-version-check --no-cache-dir"
        f" --retries 0 -d /tmp/dl --index-url https://__token__:$GITHUB_TOKEN@{ORIGIN_HOST}:"
        f"{site.https}/private/simple/ {PACKAGE}"
    )
    lines = [
        # curl sends no SNI to an IP address: interception must not need it.
        f'curl -sS -D /tmp/head -H "Authorization: Bearer $GITHUB_TOKEN" {secure}/auth;'
        " echo curl=$?",
        "grep -i '^x-seen-authorization' /tmp/head | tr -d '\\r' | sed 's/^[^:]*: /seen=/'",
        f"curl -sS -o /dev/null -w '%{{http_code}}\\n' {secure}/auth | sed 's/^/bare=/'",
        *[f"python3 /work/client.py {client} {secure}/auth" for client in ("urllib",)],
        *[
            f"python3 /work/client.py {client} {secure}/auth 2>&1 | tail -n 1"
            for client in ("requests", "httpx")
        ],
        f"git clone -q https://x-access-token:$GITHUB_TOKEN@{ORIGIN_HOST}:{site.https}"
        "/private/repo.git /tmp/clone && cat /tmp/clone/README; echo git=$?",
        f"{pip}; echo pip=$?; ls /tmp/dl",
        # GITHUB_TOKEN's placeholder to OTHER_TOKEN's host: refused inside the TLS.
        f'curl -sS -H "Authorization: Bearer $GITHUB_TOKEN" {other}/auth | sed "s/^/other=/"',
        f"python3 /work/hostile.py {site.http} {site.local_https}",
        # The only way out is the proxy.
        f"curl -sS --noproxy '*' --max-time 5 {secure}/auth 2>/dev/null; echo direct=$?",
    ]
    if node is not None:
        lines.append(f"{node} /work/fetch.js {secure}/auth")
    return "\n".join(lines) + "\n"


def write_clients(workspace: Path) -> None:
    (workspace / "client.py").write_text(CLIENT)
    (workspace / "fetch.js").write_text(NODE_FETCH)
    (workspace / "hostile.py").write_text(HOSTILE)


def refusal(name: str, scope: str) -> str:
    return f"carries the placeholder of inject_secrets {name}, which is replaced only for {scope}"


async def test_clients_inside_reach_the_origin_with_the_value_and_see_only_the_placeholder(
    sandbox_user: SandboxUser,
    workspace: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mounts, node = node_mount()
    write_clients(workspace)
    secret, other = make_secret(), make_secret("OTHER_TOKEN")
    monkeypatch.setenv("ORIGIN_EXPECT_TOKEN", secret.value)  # read by the origins as they start
    async with serving(tmp_path) as site:
        injected = inject(site, workspace, secret, other)
        try:
            result = await wrap(
                *injected.options,
                *mounts,
                command=["sh", "-c", inside_script(site, node)],
                env={"SSL_CERT_FILE": str(workspace / "origin-ca.pem")},
                user=sandbox_user,
                pass_fds=(injected.fd,),
            )
        finally:
            os.close(injected.fd)
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, stderr
    found = markers(stdout)
    placeholder, value = secret.placeholder, secret.value
    # Substituted on the way out: the origin accepted the value.
    assert found["curl"] == "0", (stdout, stderr)
    assert "authorized\ncurl=0" in stdout, stdout
    # And turned back on the way in: the origin's echo of what it got shows the placeholder.
    assert found["seen"] == f"Bearer {placeholder}", stdout
    assert found["bare"] == "401", stdout  # without the placeholder, nothing is added
    assert found["urllib"] == "200 authorized", (stdout, stderr)
    assert found["httpx"] == "200 authorized", (stdout, stderr)
    # Debian's python3 has no requests; root's PATH inside finds one that does.
    assert found["requests"] in ("200 authorized", "absent"), stdout
    assert found["git"] == "0", (stdout, stderr)
    assert "cloned through the egress proxy\n" in stdout
    assert found["pip"] == "0", (stdout, stderr)
    assert WHEEL in stdout
    if node is not None:
        assert found["node"] == "200 authorized", (stdout, stderr)
    assert found["direct"] == "7", stdout
    # GITHUB_TOKEN's placeholder at OTHER_TOKEN's host: a 403 inside its TLS, naming it.
    other_scope = f"{ORIGIN_HOST}:{site.https}"
    assert found["other"].startswith("refused "), stdout
    assert refusal("GITHUB_TOKEN", other_scope) in found["other"], stdout
    hostile = json.loads(found["hostile"])
    assert hostile["cleartext"].startswith("HTTP/1.1 403 "), hostile
    assert (
        "header Authorization carries the placeholder of inject_secrets GITHUB_TOKEN, which is"
        f" replaced only in https:// requests to {other_scope} (never in cleartext)"
    ) in hostile["cleartext"], hostile
    # A plain tunnel's first flight carrying it: the tunnel opens, then nothing goes through.
    tunnel = hostile["tunnel_cleartext"]
    opened, _, answer = tunnel.partition("\r\n\r\n")
    assert opened.startswith("HTTP/1.1 200 "), hostile
    assert answer.startswith("HTTP/1.1 403 "), hostile  # the proxy's, not the origin's 401
    assert (
        "the first data sent through the tunnel carries the placeholder of inject_secrets"
        f" GITHUB_TOKEN, which is replaced only for {other_scope}; nothing was sent"
    ) in answer, hostile
    assert hostile["by_address"].startswith("HTTP/1.1 403 "), hostile
    assert (
        f"an address of {LOCAL_NAME}, where inject_secrets OTHER_TOKEN is replaced only when it"
        " is asked for by name" in hostile["by_address"]
    ), hostile
    # One decision-log line per refusal, each naming the secret, none holding the value.
    refused = [line for line in stderr.splitlines() if "egress: refused" in line]
    assert any(f"{OTHER_HOST}:{site.other_https}" in line for line in refused), stderr
    assert any(f"{ORIGIN_HOST}:{site.http}" in line for line in refused), stderr
    assert any(f"127.0.0.1:{site.local_https}" in line for line in refused), stderr
    # The value is nowhere the sandbox or its user can see.
    assert value not in stdout
    assert value not in stderr
    assert files_holding(workspace, value) == []


def files_holding(directory: Path, text: str) -> list[Path]:
    return [
        path
        for path in directory.rglob("*")
        if path.is_file() and text.encode() in path.read_bytes()
    ]


# The podman test image's python3-minimal: no urllib.request, no json. TLS by hand through the
# proxy, trusting what the warden set up (SSL_CERT_FILE); repr() of what came back.
PODMAN_CLIENT = """
import os, socket, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
CRLF = "\\r\\n"
def get(path, token):
    with socket.create_connection(("127.0.0.1", 3128), timeout=30) as raw:
        authority = f"{host}:{port}"
        connect = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}", "", ""]
        raw.sendall(CRLF.join(connect).encode())
        opened = b""
        while not opened.endswith(b"\\r\\n\\r\\n"):
            opened += raw.recv(1)
        context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
        with context.wrap_socket(raw, server_hostname=host) as tls:
            fields = [f"Host: {authority}", f"Authorization: Bearer {token}", "Connection: close"]
            tls.sendall(CRLF.join([f"GET {path} HTTP/1.1", *fields, "", ""]).encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    return answer.decode("latin-1")
print(repr([get("/auth", os.environ["GITHUB_TOKEN"]), get("/auth", "none")]))
"""


@pytest.mark.skipif(not _image_present(), reason=f"needs podman and {IMAGE} (.ci/install-podman)")
async def test_podman_sends_the_value_to_the_origin_and_shows_the_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret, other = make_secret(), make_secret("OTHER_TOKEN")
    monkeypatch.setenv("ORIGIN_EXPECT_TOKEN", secret.value)
    workspace = tmp_path / "work"
    workspace.mkdir()
    before = container_names()
    async with serving(tmp_path) as site:
        injected = inject(site, workspace, secret, other)
        options = injected.options[: injected.options.index("-v")]  # the image has no /work
        try:
            result = await wrap(
                "--backend",
                "podman",
                *options,
                command=["python3", "-c", PODMAN_CLIENT, ORIGIN_HOST, str(site.https)],
                image=IMAGE,
                env={"SSL_CERT_FILE": str(workspace / "origin-ca.pem")},
                pass_fds=(injected.fd,),
            )
        finally:
            os.close(injected.fd)
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, stderr
    with_token, without = ast.literal_eval(stdout.strip().splitlines()[-1])
    assert with_token.startswith("HTTP/1.0 200 ") or with_token.startswith("HTTP/1.1 200 "), stdout
    assert with_token.endswith("\r\n\r\nauthorized\n"), stdout
    assert f"X-Seen-Authorization: Bearer {secret.placeholder}\r\n" in with_token, stdout
    assert " 401 " in without.partition("\r\n")[0], stdout
    assert secret.value not in stdout
    assert secret.value not in stderr
    assert container_names() == before
