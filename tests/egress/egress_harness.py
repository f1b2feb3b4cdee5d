"""Shared pieces of the egress tests: the proxy running on 127.0.0.1, a resolver that maps the
tests' ``*.test`` names, real origin servers (HTTP and HTTPS child processes) over a site with a
package index, an npm registry document and a git repository, and the environment the tools run
in. Each test makes its own site and origins (no session fixtures, so no conftest)."""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio
from cryptography.hazmat.primitives import serialization

from trio_sandbox.egress import (
    ConnectionRecord,
    EgressEvent,
    EgressPolicy,
    EgressStats,
    EventCallback,
    Injection,
    IPAddress,
    Resolver,
    serve_egress_proxy,
)
from trio_sandbox.tls import MtlsIdentity

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ORIGIN_SERVER = HERE / "origin_server.py"
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
PACKAGE = "egress-probe"
WHEEL = "egress_probe-1.0-py3-none-any.whl"
HELLO = b"hello through the egress proxy\n"
# The names the HTTPS origin's certificate is for (the tests' resolver maps *.test to loopback).
HTTPS_NAMES = ("secure.test", "pypi.test", "blocked.test")

Argument = TypeVar("Argument")
Result = TypeVar("Result")
Failure = TypeVar("Failure", bound=Exception)


def result_or_error(
    error_type: type[Failure], function: Callable[[Argument], Result], argument: Argument
) -> Result | Failure:
    """``function(argument)``, or the ``error_type`` it raised; any other exception escapes."""
    try:
        return function(argument)
    except error_type as error:
        return error


def map_resolver(names: Mapping[str, Sequence[IPAddress]]) -> Resolver:
    """A resolver answering from ``names``; any other name is unknown (like NXDOMAIN)."""

    async def resolve(name: str) -> Sequence[IPAddress]:
        await trio.lowlevel.checkpoint()
        if name not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return names[name]

    return resolve


def dot_test_resolver() -> Resolver:
    """Every ``*.test`` name resolves to 127.0.0.1, as a local DNS would point it."""

    async def resolve(name: str) -> Sequence[IPAddress]:
        await trio.lowlevel.checkpoint()
        if not name.endswith(".test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [LOOPBACK]

    return resolve


@attrs.define(eq=False)
class RunningProxy:
    port: int
    stats: EgressStats
    events: list[EgressEvent]
    # The decision log's lines, the audit's changes as published, the connection records.
    log_lines: list[str] = attrs.field(factory=list)
    changes: list[dict[str, Any]] = attrs.field(factory=list)
    connections: list[ConnectionRecord] = attrs.field(factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lines(self) -> list[str]:
        return [event.line() for event in self.events]

    async def wait_until_idle(self) -> None:
        """Until the proxy has seen every close: no client connection or tunnel open."""
        with trio.fail_after(10):
            while self.stats.connections_open or self.stats.upstreams_open:  # noqa: ASYNC110 - counters
                await trio.sleep(0.005)


@asynccontextmanager
async def running_proxy(
    policy: EgressPolicy,
    resolver: Resolver | None = None,
    *,
    handshake_timeout: float = 10.0,
    idle_timeout: float = 60.0,
    connect_timeout: float = 10.0,
    max_connections: int = 1024,
    zero_copy: bool = True,
    also_on_event: EventCallback | None = None,
    decisions_per_second: float = 1e6,
    decision_burst: int = 1_000_000,
    log_window: float = 1.0,
    records_per_window: int = 100,
    injection: Injection | None = None,
) -> AsyncIterator[RunningProxy]:
    """serve_egress_proxy on a fresh 127.0.0.1 listener, cancelled on leaving; its events,
    log lines and published changes are collected (events passed to ``also_on_event`` too).
    Not throttled unless asked (the throttle's own tests ask)."""
    events: list[EgressEvent] = []
    log_lines: list[str] = []
    changes: list[dict[str, Any]] = []
    connections: list[ConnectionRecord] = []

    def on_event(event: EgressEvent) -> None:
        events.append(event)
        if also_on_event is not None:
            also_on_event(event)

    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        stats: EgressStats = await nursery.start(
            functools.partial(
                serve_egress_proxy,
                listener,
                policy,
                resolver=resolver or dot_test_resolver(),
                on_event=on_event,
                on_log=log_lines.append,
                on_changes=changes.append,
                on_connection=connections.append,
                records_per_window=records_per_window,
                decisions_per_second=decisions_per_second,
                decision_burst=decision_burst,
                log_window=log_window,
                handshake_timeout=handshake_timeout,
                idle_timeout=idle_timeout,
                connect_timeout=connect_timeout,
                max_connections=max_connections,
                zero_copy=zero_copy,
                injection=injection,
            )
        )
        yield RunningProxy(port, stats, events, log_lines, changes, connections)
        nursery.cancel_scope.cancel()


async def open_connection(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port)


async def receive_until(
    stream: trio.abc.ReceiveStream, marker: bytes, limit: int = 1 << 20
) -> bytes:
    """Bytes until ``marker`` is among them (or the peer closes)."""
    data = b""
    while marker not in data and len(data) < limit:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    return data


async def receive_all(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


# --- the site the origin servers serve ------------------------------------------------------------


@attrs.frozen
class Certificates:
    ca: Path
    cert: Path
    key: Path


def make_certificates(directory: Path, hostnames: tuple[str, ...]) -> Certificates:
    """A throw-away CA and a server certificate for ``hostnames``, as PEM files."""
    identity = MtlsIdentity.generate_server(hostnames=hostnames)
    paths = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths.ca.write_text(identity.ca_cert_pem())
    paths.cert.write_bytes(identity.certificate.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        identity.leaf.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths.key.chmod(0o600)
    return paths


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel() -> bytes:
    """A minimal valid wheel of the package ``egress-probe`` 1.0."""
    files = {
        "egress_probe/__init__.py": b"VERSION = '1.0'\n",
        "egress_probe-1.0.dist-info/METADATA": (
            b"Metadata-Version: 2.1\nName: egress-probe\nVersion: 1.0\n"
        ),
        "egress_probe-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: egress-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = [_record_line(name, data) for name, data in files.items()]
    record.append("egress_probe-1.0.dist-info/RECORD,,")
    files["egress_probe-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return buffer.getvalue()


def _run(*argv: str, cwd: Path) -> None:
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True, env=tool_environment(cwd))


def build_site(root: Path) -> None:
    """hello.txt, a PEP 503 simple index with one wheel, an npm registry document, and a bare
    git repository prepared for the dumb HTTP protocol."""
    root.mkdir(parents=True)
    (root / "hello.txt").write_bytes(HELLO)
    wheel = build_wheel()
    (root / "packages").mkdir()
    (root / "packages" / WHEEL).write_bytes(wheel)
    project = root / "simple" / PACKAGE
    project.mkdir(parents=True)
    (root / "simple" / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="{PACKAGE}/">{PACKAGE}</a></body></html>\n'
    )
    digest = hashlib.sha256(wheel).hexdigest()
    (project / "index.html").write_text(
        "<!DOCTYPE html><html><body>"
        f'<a href="../../packages/{WHEEL}#sha256={digest}">{WHEEL}</a>'
        "</body></html>\n"
    )
    # An npm registry's document for one package (what `npm view` reads).
    (root / "npm").mkdir()
    (root / "npm" / PACKAGE).write_text(
        json.dumps(
            {
                "name": PACKAGE,
                "dist-tags": {"latest": "1.0.0"},
                "versions": {"1.0.0": {"name": PACKAGE, "version": "1.0.0"}},
            }
        )
    )
    work = root.parent / "git-work"
    work.mkdir()
    _run("git", "init", "-q", "-b", "main", str(work), cwd=root.parent)
    (work / "README").write_text("cloned through the egress proxy\n")
    _run("git", "add", "README", cwd=work)
    _run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one", cwd=work)
    _run("git", "clone", "-q", "--bare", str(work), str(root / "repo.git"), cwd=root.parent)
    _run("git", "update-server-info", cwd=root / "repo.git")


async def start_origin(
    nursery: trio.Nursery,
    root: Path,
    certificates: Certificates | None = None,
    host: str = "127.0.0.1",
) -> int:
    """origin_server.py serving ``root`` on ``host`` (over TLS with ``certificates``): its
    port."""
    argv = [sys.executable, str(ORIGIN_SERVER), str(root)]
    if certificates is not None:
        argv += [str(certificates.cert), str(certificates.key)]
    env = {**os.environ, "ORIGIN_HOST": host}
    process: trio.Process = await nursery.start(
        functools.partial(trio.run_process, argv, stdout=subprocess.PIPE, check=False, env=env)
    )
    assert process.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        chunk = await process.stdout.receive_some(64)
        if not chunk:
            raise RuntimeError("the origin server ended before printing its port")
        line += chunk
    return int(line)


@attrs.frozen
class Origins:
    """The site served over HTTP on port ``http`` and over HTTPS on port ``https``."""

    site: Path
    certificates: Certificates
    http: int
    https: int


@asynccontextmanager
async def serving_site(directory: Path, host: str = "127.0.0.1") -> AsyncIterator[Origins]:
    """A fresh site under ``directory`` and both origin servers on ``host``, stopped on
    leaving (the certificate names ``host`` too)."""
    site = directory / "site"
    await trio.to_thread.run_sync(build_site, site)
    certificates = await trio.to_thread.run_sync(make_certificates, directory, (*HTTPS_NAMES, host))
    async with trio.open_nursery() as nursery:
        http = await start_origin(nursery, site, host=host)
        https = await start_origin(nursery, site, certificates, host=host)
        yield Origins(site, certificates, http, https)
        nursery.cancel_scope.cancel()


# --- tools ------------------------------------------------------------------------------------


def tool_environment(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without any proxy setting, with a private HOME and no
    system or user configuration for git and pip, plus ``extra``."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if "proxy" not in key.lower() and not key.startswith(("PIP_", "GIT_", "npm_"))
    }
    environment.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    environment.update(extra or {})
    return environment


@attrs.frozen
class ToolResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def run_tool(
    argv: Sequence[str], environment: Mapping[str, str], cwd: Path | None = None
) -> ToolResult:
    """A real child process, bounded in (real) time: a tool never waits on a hung proxy."""
    with trio.fail_after(120):
        finished = await trio.run_process(
            list(argv),
            env=dict(environment),
            cwd=cwd,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return ToolResult(
        finished.returncode,
        finished.stdout.decode(errors="replace"),
        finished.stderr.decode(errors="replace"),
    )


_NODE_VERSION = re.compile(r"v(\d+)\.(\d+)\.")


def node_with_env_proxy() -> str | None:
    """A Node.js that honours NODE_USE_ENV_PROXY (22.21+ on 22, 24.5+ on 24, or newer): the
    project's (.ci/install puts Node 22 in .tools/npm), else the one on PATH."""
    candidates = [REPO / ".tools" / "npm" / "node_modules" / "node" / "bin" / "node"]
    on_path = shutil.which("node")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if not candidate.exists():
            continue
        version = subprocess.run(
            [str(candidate), "--version"], capture_output=True, text=True, check=False
        ).stdout
        matched = _NODE_VERSION.match(version)
        if matched is None:
            continue
        version_number = (int(matched[1]), int(matched[2]))
        if version_number >= (24, 5) or (22, 21) <= version_number < (23, 0):
            return str(candidate)
    return None
