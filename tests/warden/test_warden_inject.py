"""inject_secrets in the warden: ``--inject-secret`` and ``--inject-fd`` as the command line
gives them (every refusal a usage error naming what is wrong, never a value), the trust bundle
found inside the sandbox's root, and real bubblewrap sandboxes, as root and as the ordinary
user: the sandbox sees the placeholder and a system bundle (and every trust variable) holding the
interception CA, and the real value is nowhere in it: not in its environment, not in /proc of any
process there, not in a file, not in the memory of its processes or of the namespace helper."""

from __future__ import annotations

import ast
import contextlib
import functools
import ipaddress
import json
import os
import secrets
import ssl
import string
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.support.sandbox_users import SandboxUser
from tests.warden.test_warden_podman import IMAGE, _image_present, container_names
from tests.warden.warden_harness import (
    HANG_GUARD_SECONDS,
    live_pids_with,
    unique_marker,
    wait_gone,
    warden_argv,
    wrap,
)
from trio_sandbox.concurrency import memfd_holding
from trio_sandbox.contract import (
    TRUST_VARIABLES,
    InjectedValue,
    InjectionPayload,
    combined_bundle,
    encode_injection,
)
from trio_sandbox.egress import Destination, EgressPolicy
from trio_sandbox.tls import InterceptionAuthority, InterceptionScopeError
from trio_sandbox.warden import WrapRequestError, parse_wrap_args
from trio_sandbox.warden._egress import InterceptionContexts
from trio_sandbox.warden._inject import read_injection
from trio_sandbox.warden._spec import WrapSpec
from trio_sandbox.warden._trust import (
    SYSTEM_BUNDLES,
    plan_trust,
    resolve_inside,
)
from trio_sandbox.warden.bwrap._command import bwrap_argv

ORIGIN_HOST = "127.0.0.2"
_ALPHANUMERIC = string.ascii_letters + string.digits


@attrs.frozen
class Secret:
    name: str
    value: str = attrs.field(repr=False)
    placeholder: str


def make_secret(name: str = "GITHUB_TOKEN") -> Secret:
    """A value no process holds by chance, and a placeholder of its shape."""
    body = "".join(secrets.choice(_ALPHANUMERIC) for _ in range(36))
    other = "".join(secrets.choice(_ALPHANUMERIC) for _ in range(36))
    return Secret(name, f"ghp_{body}", f"ghp_{other}")


def injection_fd(
    authority: InterceptionAuthority, *given: Secret, certificate: str | None = None
) -> int:
    certificate_pem, key_pem = authority.to_pem()
    payload = InjectionPayload(
        certificate or certificate_pem,
        key_pem,
        tuple(InjectedValue(secret.name, secret.placeholder, secret.value) for secret in given),
    )
    return memfd_holding("test-inject", encode_injection(payload))


@pytest.fixture
def authority() -> InterceptionAuthority:
    return InterceptionAuthority.generate([ORIGIN_HOST])


@pytest.fixture
def open_fds() -> Iterator[list[int]]:
    """Descriptors a test made, closed after it unless the warden's reading closed them."""
    fds: list[int] = []
    yield fds
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _inject_options(entry: str, fd: int) -> tuple[str, ...]:
    return ("--network", "allow", "--inject-secret", entry, "--inject-fd", str(fd))


def _usage_error(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        parse_wrap_args(["wrap", *argv])
    assert exited.value.code == 2
    return capsys.readouterr().err


# ---------------------------------------------------------------- the command line


_WITH_REQUEST = ("--inject-secret", "GITHUB_TOKEN=api.github.test", "--inject-fd", "{fd}")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        *[
            ([*argv, *_WITH_REQUEST], message)
            for argv, message in [
                (["--network", "none"], "inject_secrets needs network = 'allow'"),
                (["--network", "host"], "inject_secrets needs network = 'allow'"),
                (
                    ["--network", "allow", "--backend", "kubernetes", "--allow-domain", "10.0.0.1"],
                    "the kubernetes back end does not have",
                ),
                (
                    ["--network", "allow", "--inject-secret", "GITHUB_TOKEN=x.test"],
                    "--inject-secret GITHUB_TOKEN: given twice",
                ),
                (
                    ["--network", "allow", "--env", "GITHUB_TOKEN=mine"],
                    "the sandbox's variable GITHUB_TOKEN is its placeholder",
                ),
                (
                    ["--network", "allow", "--deny-domain", "github.test"],
                    "'api.github.test' is denied by --deny-domain 'github.test'",
                ),
                (
                    ["--network", "allow", "--deny-domain", "api.github.test:443"],
                    "'api.github.test' is denied by --deny-domain 'api.github.test:443'",
                ),
            ]
        ],
        *[
            (["--network", "allow", *argv], message)
            for argv, message in [
                (["--inject-secret", "GITHUB_TOKEN=api.github.test"], "needs --inject-fd N"),
                (["--inject-fd", "{fd}"], "--inject-fd without --inject-secret"),
                (["--inject-secret", "GITHUB_TOKEN", "--inject-fd", "{fd}"], "expected NAME=HOST"),
                (
                    [
                        "--inject-secret",
                        "GITHUB_TOKEN=https://api.github.test",
                        "--inject-fd",
                        "{fd}",
                    ],
                    "is not a host",
                ),
                (
                    ["--inject-secret", "GITHUB_TOKEN=*.test", "--inject-fd", "{fd}"],
                    "inject_secrets GITHUB_TOKEN entry '*.test': covers the whole top-level domain",
                ),
                (
                    ["--inject-secret", "GITHUB_TOKEN=api.github.test:0", "--inject-fd", "{fd}"],
                    "inject_secrets GITHUB_TOKEN",
                ),
                (
                    ["--inject-secret", "T=a.test", "--inject-fd", "2"],
                    "a descriptor number above 2",
                ),
                (["--inject-secret", "T=a.test", "--inject-fd", "987654"], "Bad file descriptor"),
            ]
        ],
    ],
)
def test_refusals_are_usage_errors(
    argv: list[str],
    message: str,
    authority: InterceptionAuthority,
    open_fds: list[int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = make_secret()
    fd = injection_fd(authority, secret)
    open_fds.append(fd)
    image = "python:3.12" if "kubernetes" in argv else "host"
    error = _usage_error([*(text.format(fd=fd) for text in argv), image], capsys)
    assert message in error
    assert secret.value not in error


def test_hosts_are_allowed_as_written_and_proxy_variables_yield_to_the_callers(
    authority: InterceptionAuthority, open_fds: list[int]
) -> None:
    fd = injection_fd(authority, make_secret(), make_secret("NPM_TOKEN"))
    open_fds.append(fd)
    spec = parse_wrap_args(
        [
            "wrap",
            "--network",
            "allow",
            "--allow-domain",
            "api.github.test",
            "--inject-secret",
            "GITHUB_TOKEN=api.github.test,127.0.0.2:8443",
            "--inject-secret",
            "NPM_TOKEN=*.npm.test,api.github.test",
            "--inject-fd",
            str(fd),
            "--env",
            "HTTPS_PROXY=http://mine:1",
            "host",
        ]
    )
    assert spec.egress is not None
    # Each entry once, as written: never "api.github.test:443" (an exact name with a port
    # would reach private addresses).
    assert [rule.entry for rule in spec.egress.allow] == [
        "api.github.test",
        "127.0.0.2:8443",
        "*.npm.test",
    ]
    assert spec.egress == EgressPolicy.parse(
        allow=["api.github.test", "127.0.0.2:8443", "*.npm.test"]
    )
    assert [request.format() for request in spec.inject] == [
        "GITHUB_TOKEN=api.github.test,127.0.0.2:8443",
        "NPM_TOKEN=*.npm.test,api.github.test",
    ]
    assert spec.inject_fd == fd
    assert not os.get_inheritable(fd)  # no child started before the read inherits it
    # The proxy's variables first, the caller's after them: bwrap's last --setenv wins.
    names = [name for name, _ in spec.env]
    assert names.index("HTTPS_PROXY") < len(names) - 1
    assert spec.env[-1] == ("HTTPS_PROXY", "http://mine:1")
    # The values are read later (once the namespace helper started): nothing yet.
    assert "GITHUB_TOKEN" not in names


def _spec(fd: int, *names: str) -> WrapSpec:
    texts = [arg for name in names for arg in ("--inject-secret", f"{name}={ORIGIN_HOST}")]
    return parse_wrap_args(["wrap", "--network", "allow", *texts, "--inject-fd", str(fd), "host"])


def test_the_descriptor_is_read_once_and_closed(authority: InterceptionAuthority) -> None:
    secret = make_secret()
    fd = injection_fd(authority, secret)
    material = read_injection(_spec(fd, secret.name))
    assert material is not None
    assert material.placeholders() == ((secret.name, secret.placeholder),)
    assert material.ca_certificate_pem == authority.certificate_pem()
    assert secret.value not in repr(material)
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)


@pytest.mark.parametrize(
    ("asked", "given", "message"),
    [
        (("GITHUB_TOKEN",), ("GITHUB_TOKEN", "NPM_TOKEN"), "values for NPM_TOKEN, not asked"),
        (("GITHUB_TOKEN", "NPM_TOKEN"), ("GITHUB_TOKEN",), "no value for NPM_TOKEN"),
        (("GITHUB_TOKEN",), ("OTHER",), "no value for GITHUB_TOKEN; values for OTHER"),
    ],
)
def test_names_in_the_descriptor_must_be_the_command_lines(
    asked: tuple[str, ...], given: tuple[str, ...], message: str, authority: InterceptionAuthority
) -> None:
    held = [make_secret(name) for name in given]
    fd = injection_fd(authority, *held)
    with pytest.raises(WrapRequestError) as caught:
        read_injection(_spec(fd, *asked))
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"--inject-fd {fd}: ")
    for secret in held:
        assert secret.value not in str(caught.value)


def test_a_damaged_descriptor_names_the_key_not_the_value(
    authority: InterceptionAuthority,
) -> None:
    secret = make_secret()
    payload = InjectionPayload(
        *authority.to_pem(), (InjectedValue(secret.name, secret.placeholder, secret.value),)
    )
    data = encode_injection(payload).replace(b'"placeholder"', b'"placeholdr"')
    fd = memfd_holding("test-inject", data)
    with pytest.raises(WrapRequestError) as caught:
        read_injection(_spec(fd, secret.name))
    assert str(caught.value) == (
        f"--inject-fd {fd} secrets.{secret.name}: expected exactly the keys value, placeholder"
    )
    fd = memfd_holding("test-inject", data[: len(data) // 2])
    with pytest.raises(WrapRequestError) as caught:
        read_injection(_spec(fd, secret.name))
    assert str(caught.value) == f"--inject-fd {fd}: not JSON"


# ---------------------------------------------------------------- the trust bundle inside a root


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/ssl/certs").mkdir(parents=True)
    (root / "usr/lib/ssl").mkdir(parents=True)
    return root


def test_the_bundle_is_found_inside_the_root_with_links_followed_there(
    tmp_path: Path, authority: InterceptionAuthority
) -> None:
    root = _root(tmp_path)
    (root / "etc/ssl/certs/ca-certificates.crt").write_bytes(b"SYSTEM ROOTS\n")
    # Absolute inside the root: it must not be read as the host's /etc/ssl/...
    (root / "usr/lib/ssl/cert.pem").symlink_to("/etc/ssl/certs/ca-certificates.crt")
    (root / "etc/ssl/cert.pem").symlink_to("certs/../certs/./ca-certificates.crt")
    plan = plan_trust(str(root), authority.certificate_pem())
    assert plan.targets == ("/etc/ssl/certs/ca-certificates.crt",)
    assert plan.path == "/etc/ssl/certs/ca-certificates.crt"
    assert plan.data == combined_bundle(b"SYSTEM ROOTS\n", authority.certificate_pem())
    assert dict(plan.env) == dict.fromkeys(TRUST_VARIABLES, plan.path)


def test_every_distinct_bundle_is_covered_with_the_first_ones_roots(
    tmp_path: Path, authority: InterceptionAuthority
) -> None:
    root = _root(tmp_path)
    (root / "etc/pki/tls/certs").mkdir(parents=True)
    (root / "etc/pki/tls/certs/ca-bundle.crt").write_bytes(b"FEDORA ROOTS\n")
    (root / "etc/ssl/cert.pem").write_bytes(b"OTHER ROOTS\n")
    (root / "etc/ssl/ca-bundle.pem").mkdir()  # not a file: not a target
    plan = plan_trust(str(root), authority.certificate_pem())
    assert plan.targets == ("/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")
    assert plan.data.startswith(b"FEDORA ROOTS\n")


def test_links_leaving_or_looping_find_nothing_of_the_hosts(
    tmp_path: Path, authority: InterceptionAuthority
) -> None:
    root = _root(tmp_path)
    host_file = tmp_path / "host-secret.pem"
    host_file.write_bytes(b"HOST FILE\n")
    (root / "etc/ssl/certs/ca-certificates.crt").symlink_to(host_file)  # absent inside
    (root / "etc/ssl/cert.pem").symlink_to("../../../../../../..")
    (root / "usr/lib/ssl/cert.pem").symlink_to("cert.pem")  # loops on itself
    assert resolve_inside(str(root), "/usr/lib/ssl/cert.pem") is None
    assert resolve_inside(str(root), "/etc/ssl/cert.pem") == "/"
    with pytest.raises(WrapRequestError) as caught:
        plan_trust(str(root), authority.certificate_pem())
    assert "has no system trust bundle" in str(caught.value)
    assert all(candidate in str(caught.value) for candidate in SYSTEM_BUNDLES)


def test_the_bundle_is_bound_after_the_system_trees_and_readable_by_all() -> None:
    spec = WrapSpec(image="host", command=("true",))
    argv = bwrap_argv(
        spec,
        [],
        as_root=False,
        info_fd=10,
        seccomp_fd=11,
        data_binds=[(12, "/etc/ssl/certs/ca-certificates.crt")],
    )
    bind = argv.index("--ro-bind-data")
    assert argv[bind - 2 : bind + 3] == [
        "--perms",
        "0444",
        "--ro-bind-data",
        "12",
        "/etc/ssl/certs/ca-certificates.crt",
    ]
    etc = max(i for i, arg in enumerate(argv) if arg == "/etc" and argv[i - 2] == "--ro-bind")
    assert etc < bind
    assert argv.index("--tmpfs") < bind  # after the masks and /tmp too


# ---------------------------------------------------------------- real sandboxes

# Runs inside: what the sandbox sees of its variables, its trust bundle and /proc, as JSON.
_INSIDE = r"""
import json, os, sys
go = os.open("/work/go", os.O_RDWR)  # a FIFO: opened now, read below
seen = {"env": dict(os.environ), "proc": {}, "files": {}}
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for part in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{part}", "rb") as f:
                    seen["proc"][f"{pid}/{part}"] = f.read().decode("latin-1")
            except OSError as error:
                seen["proc"][f"{pid}/{part}"] = f"unreadable: {error.errno}"
for top in ("/etc/ssl", "/tmp", "/dev/shm", "/work"):
    for directory, _, names in os.walk(top):
        for name in names:
            path = os.path.join(directory, name)
            if not os.path.isfile(path):
                continue  # the FIFO below
            try:
                with open(path, "rb") as f:
                    seen["files"][path] = f.read(1 << 20).decode("latin-1")
            except OSError as error:
                seen["files"][path] = f"unreadable: {error.errno}"
bundle = os.environ["SSL_CERT_FILE"]
seen["bundle_mode"] = oct(os.stat(bundle).st_mode & 0o777)
seen["bundle"] = open(bundle).read()
seen["links"] = {p: open(p).read() == seen["bundle"] for p in ("/usr/lib/ssl/cert.pem",)
                 if os.path.exists(p)}
seen["uid"] = os.getuid()
sys.stdout.write(json.dumps(seen) + "\n")
sys.stdout.flush()
os.read(go, 1)  # blocks until the test has looked at the host's processes
"""


def _memory_holds(pid: int, needle: bytes) -> bool | None:
    """Whether ``pid``'s readable memory holds ``needle`` (None: the process is gone)."""
    try:
        with open(f"/proc/{pid}/maps") as maps:
            regions = [line.split()[:2] for line in maps]
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
            for span, perms in regions:
                if not perms.startswith("r"):
                    continue
                start, end = (int(bound, 16) for bound in span.split("-"))
                try:
                    memory.seek(start)
                    if needle in memory.read(end - start):
                        return True
                except (OSError, OverflowError, ValueError):
                    continue  # [vvar] and the like
    except (FileNotFoundError, ProcessLookupError):
        return None
    return False


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(name))
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending += children.get(current, [])
    return found


def _host_view(warden_pid: int, secret: Secret) -> dict[str, object]:
    """From the host, while the sandbox runs: every process of the warden's tree (the warden,
    its namespace helper, bwrap, everything in the sandbox) — whether its command line or
    environment holds the value, and (as root) whether the memory of the helper and of every
    process in the sandbox does."""
    needle = secret.value.encode()
    tree = _descendants(warden_pid)
    exposed = []
    for pid in tree:
        for part in ("cmdline", "environ"):
            try:
                if needle in Path(f"/proc/{pid}/{part}").read_bytes():
                    exposed.append(f"{pid}/{part}")
            except OSError:
                continue
    in_memory = []
    scanned = 0
    if os.geteuid() == 0:
        for pid in tree:
            if pid == warden_pid:
                continue  # the warden holds the value: it writes it into requests
            try:
                executable = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            result = _memory_holds(pid, needle)
            if result is not None:
                scanned += 1
            if result:
                in_memory.append(f"{pid} ({executable})")
    return {"exposed": exposed, "in_memory": in_memory, "scanned": scanned, "tree": len(tree)}


async def test_the_sandbox_sees_the_placeholder_and_trusts_the_ca_but_never_holds_the_value(
    sandbox_user: SandboxUser, workspace: Path, authority: InterceptionAuthority
) -> None:
    secret = make_secret()
    fd = injection_fd(authority, secret)
    os.mkfifo(workspace / "go")
    os.chown(workspace / "go", sandbox_user.uid, sandbox_user.gid)
    argv = [
        *warden_argv(
            sandbox_user,
            "--network",
            "allow",
            "--inject-secret",
            f"{secret.name}={ORIGIN_HOST}",
            "--inject-fd",
            str(fd),
            "--env",
            "SSL_CERT_FILE=/caller/own.pem",
            "--env",
            "HTTPS_PROXY=http://127.0.0.1:9",
            "-v",
            f"{workspace}:/work",
        ),
        "host",
        "--",
        sandbox_user.python,
        "-c",
        _INSIDE,
    ]
    with trio.fail_after(HANG_GUARD_SECONDS):
        process = await trio.lowlevel.open_process(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(fd,),
            env=sandbox_user.env(None),
        )
        os.close(fd)
        try:
            assert process.stdout is not None
            assert process.stderr is not None
            output = b""
            # The JSON line comes last, before the command blocks on the FIFO.
            while not output.endswith(b"\n") and (chunk := await process.stdout.receive_some()):
                output += chunk
            host_view = _host_view(process.pid, secret)
            # Never blocks: the sandbox holds the FIFO open (ENXIO if it is gone).
            go = os.open(workspace / "go", os.O_WRONLY | os.O_NONBLOCK)
            os.write(go, b"g")
            os.close(go)
            async with process.stdout, process.stderr:
                output += b"".join([chunk async for chunk in process.stdout])
                errors = b"".join([chunk async for chunk in process.stderr])
            status = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert status == 0, errors.decode()
    seen = json.loads(output.decode().strip().splitlines()[-1])
    # The placeholder, and the trust variables naming the system bundle, which holds our CA.
    assert seen["env"][secret.name] == secret.placeholder
    bundle_path = seen["env"]["SSL_CERT_FILE"]
    assert bundle_path in SYSTEM_BUNDLES
    for variable in TRUST_VARIABLES:
        assert seen["env"][variable] == bundle_path  # the caller's SSL_CERT_FILE was replaced
    assert authority.certificate_pem() in seen["bundle"]
    system_roots = await trio.Path(bundle_path).read_text()
    assert seen["bundle"].startswith(system_roots)  # the system roots kept
    assert seen["bundle_mode"] == "0o444"
    assert all(seen["links"].values()), seen["links"]
    assert "SSL_CERT_FILE given by the caller is replaced by" in errors.decode()
    # The caller's proxy variable wins over the warden's (the README's order); the others stay.
    assert seen["env"]["HTTPS_PROXY"] == "http://127.0.0.1:9"
    assert seen["env"]["https_proxy"] == "http://127.0.0.1:3128"
    # The start line names the secret and its hosts, never the value.
    assert (
        f"egress: inject_secrets: {secret.name} \u2192 {ORIGIN_HOST} (TLS intercepted there only)"
        in errors.decode()
    )
    # The value is nowhere inside: environments, command lines, files, the output.
    assert secret.value not in output.decode()
    assert secret.value not in errors.decode()
    assert secret.placeholder in seen["proc"][f"{1}/environ"] or any(
        secret.placeholder in text for text in seen["proc"].values()
    )
    # Nor on the host side of the warden's tree, nor in the sandbox's or the helper's memory.
    assert host_view["exposed"] == [], host_view
    assert host_view["in_memory"] == [], host_view
    if os.geteuid() == 0:
        assert isinstance(host_view["scanned"], int)
        assert host_view["scanned"] >= 3, host_view  # helper, bwrap, the sandbox's processes


async def test_a_bad_descriptor_stops_the_warden_without_showing_the_value(
    sandbox_user: SandboxUser, authority: InterceptionAuthority
) -> None:
    secret = make_secret()
    fd = injection_fd(authority, secret)
    result = await wrap(
        *_inject_options(f"OTHER={ORIGIN_HOST}", fd),
        command=["true"],
        user=sandbox_user,
        pass_fds=(fd,),
    )
    os.close(fd)
    stderr = result.stderr.decode()
    assert result.returncode == 125, stderr
    assert f"--inject-fd {fd}: no value for OTHER; values for {secret.name}, not asked" in stderr
    assert secret.value not in stderr
    assert secret.value not in result.stdout.decode()


# The test image's python3-minimal has no json: repr, read back with ast.literal_eval.
_INSIDE_CONTAINER = r"""
import os
seen = {"env": dict(os.environ), "proc": {}}
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for part in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{part}", "rb") as f:
                    seen["proc"][f"{pid}/{part}"] = f.read().decode("latin-1")
            except OSError as error:
                seen["proc"][f"{pid}/{part}"] = f"unreadable: {error.errno}"
bundle = os.environ["SSL_CERT_FILE"]
seen["bundle_mode"] = oct(os.stat(bundle).st_mode & 0o777)
seen["bundle"] = open(bundle).read()
print(repr(seen))
"""


async def _podman_inside(
    authority: InterceptionAuthority, secret: Secret, image: str
) -> tuple[dict[str, Any], str]:
    """What the sandbox's python saw in a podman sandbox of ``image``, and the warden's stderr."""
    fd = injection_fd(authority, secret)
    before = container_names()
    result = await wrap(
        "--backend",
        "podman",
        *_inject_options(f"{secret.name}={ORIGIN_HOST}", fd),
        command=["python3", "-c", _INSIDE_CONTAINER],
        image=image,
        pass_fds=(fd,),
    )
    os.close(fd)
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, stderr
    assert secret.value not in stdout
    assert secret.value not in stderr
    assert container_names() == before
    seen: dict[str, Any] = ast.literal_eval(stdout.strip().splitlines()[-1])
    assert seen["env"][secret.name] == secret.placeholder
    assert any(secret.placeholder in text for text in seen["proc"].values())
    assert not any(secret.value in text for text in seen["proc"].values())
    path = seen["env"]["SSL_CERT_FILE"]
    assert path in SYSTEM_BUNDLES
    assert all(seen["env"][variable] == path for variable in TRUST_VARIABLES)
    assert authority.certificate_pem() in seen["bundle"]
    assert seen["bundle_mode"] == "0o644"
    return seen, stderr


@pytest.mark.skipif(not _image_present(), reason=f"needs podman and {IMAGE} (.ci/install-podman)")
async def test_podman_trusts_the_ca_through_the_images_own_bundle(
    authority: InterceptionAuthority, tmp_path: Path
) -> None:
    """An image with a bundle keeps its own roots (read through podman image mount, as root)."""
    image = f"localhost/trio-sandbox-test-bundle:{secrets.token_hex(4)}"
    await trio.Path(tmp_path / "roots.pem").write_text("IMAGE ROOTS\n")
    await trio.Path(tmp_path / "Containerfile").write_text(
        f"FROM {IMAGE}\nCOPY roots.pem /etc/ssl/certs/ca-certificates.crt\n"
    )
    build = ["podman", "build", "-q", "--pull=never", "-t", image, str(tmp_path)]
    await trio.run_process(build, capture_stdout=True)
    try:
        seen, stderr = await _podman_inside(authority, make_secret(), image)
    finally:
        await trio.run_process(["podman", "rmi", "--force", image], capture_stdout=True)
    if os.geteuid() == 0:
        assert seen["bundle"].startswith("IMAGE ROOTS\n")
        assert "system trust bundle" not in stderr
    else:
        assert "only a root podman can read the image's files" in stderr


@pytest.mark.skipif(not _image_present(), reason=f"needs podman and {IMAGE} (.ci/install-podman)")
async def test_podman_sees_the_placeholder_and_trusts_the_ca(
    authority: InterceptionAuthority,
) -> None:
    """The test image has no CA bundle of its own: the host's, plus the CA, with a warning."""
    _, stderr = await _podman_inside(authority, make_secret(), IMAGE)
    assert f"not {IMAGE}'s own (it has no system trust bundle)" in stderr


async def test_a_ca_not_limited_to_the_inject_hosts_stops_the_sandbox(
    sandbox_user: SandboxUser,
) -> None:
    """The CA must be limited to exactly the hosts on the command line: a wider one (a host
    that asked for more than it says) is refused as the proxy warms up, and the sandbox stops
    with it, leaving no process behind."""
    wider = InterceptionAuthority.generate([ORIGIN_HOST, "api.github.test"])
    secret = make_secret()
    fd = injection_fd(wider, secret)
    marker = unique_marker()
    result = await wrap(
        *_inject_options(f"{secret.name}={ORIGIN_HOST}", fd),
        command=["sleep", marker],
        user=sandbox_user,
        pass_fds=(fd,),
    )
    os.close(fd)
    stderr = result.stderr.decode()
    assert result.returncode == 125, stderr
    assert "inject_secrets: the interception CA's NameConstraints are not the" in stderr
    assert secret.value not in stderr
    await wait_gone(live_pids_with(marker))
    assert live_pids_with(marker) == []


# ---------------------------------------------------------------- the proxy's contexts


def _contexts(
    authority: InterceptionAuthority, secret: Secret, *hosts: str
) -> InterceptionContexts:
    fd = injection_fd(authority, secret)
    spec = parse_wrap_args(
        [
            "wrap",
            "--network",
            "allow",
            "--inject-secret",
            f"{secret.name}={','.join(hosts)}",
            "--inject-fd",
            str(fd),
            "host",
        ]
    )
    material = read_injection(spec)
    assert material is not None
    return InterceptionContexts(material)


async def test_concurrent_connects_to_one_host_wait_for_one_leaf() -> None:
    hosts = ("api.github.test", f"{ORIGIN_HOST}:8443", "*.uploads.test")
    authority = InterceptionAuthority.generate(hosts)
    secret = make_secret()
    contexts = _contexts(authority, secret, *hosts)
    injection = contexts.injection()
    assert [found.name for found in injection.secrets] == [secret.name]
    assert injection.scoped(Destination("api.github.test", 443))
    assert not injection.scoped(Destination("api.github.test", 80))  # allowed, not injected
    assert secret.value not in repr(injection) + repr(contexts)
    got: dict[str, list[ssl.SSLContext]] = {"api.github.test": [], "a.uploads.test": []}

    async def connect(host: str) -> None:
        got[host].append(await injection.server_context(Destination(host, 443)))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(connect, "api.github.test")
        for _ in range(3):
            nursery.start_soon(connect, "a.uploads.test")
    # One leaf per host, however many asked at once.
    for host, contexts_made in got.items():
        assert all(context is contexts_made[0] for context in contexts_made), host
    assert got["api.github.test"][0] is not got["a.uploads.test"][0]
    assert await injection.upstream_context() is await injection.upstream_context()

    # The minted leaf passes a client that trusts the CA (what the sandbox's bundle holds).
    context = await injection.server_context(Destination(ipaddress.ip_address(ORIGIN_HOST), 8443))
    client = ssl.create_default_context(cadata=authority.certificate_pem())
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_ssl_over_tcp, _greet, 0, context, host="127.0.0.1")
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]
        stream = trio.SSLStream(
            await trio.open_tcp_stream("127.0.0.1", port), client, server_hostname=ORIGIN_HOST
        )
        async with stream:
            assert await stream.receive_some() == b"hello"
        nursery.cancel_scope.cancel()


async def _greet(stream: trio.SSLStream[trio.SocketStream]) -> None:
    async with stream:
        await stream.send_all(b"hello")


async def test_no_leaf_outside_the_inject_hosts() -> None:
    authority = InterceptionAuthority.generate([ORIGIN_HOST])
    injection = _contexts(authority, make_secret(), ORIGIN_HOST).injection()
    with pytest.raises(InterceptionScopeError):
        await injection.server_context(Destination("evil.test", 443))
