"""``python -m trio_sandbox.tools`` as a real child process, driven the way the host drives it.

Every test spawns the tool server, reads its CA block through the contract's parser, and talks
to it over real mTLS (or plain HTTP on loopback). ``trio.fail_after`` bounds are hang guards
only; timing goals live in benchmarks/tool_server_start.py.
"""

from __future__ import annotations

import base64
import datetime
import importlib.metadata
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path

import attrs
import pytest
import trio

from tests.tools.tools_harness import ORIGINAL_TOOL_NAMES
from trio_sandbox.contract import STARTED_LINE_PREFIX
from trio_sandbox.mcp import LATEST_VERSION, McpClient, open_mcp_client, websocket_transport
from trio_sandbox.mcp.client import memory_transport
from trio_sandbox.tls import MtlsIdentity, read_ca_block
from trio_sandbox.tools import ToolServerOptionsError, open_tool_server
from trio_sandbox.tools._limits import ToolLimits
from trio_sandbox.tools._main import WARM_UP_DELAY, _WarmUp, default_bind, parse_options
from trio_sandbox.tools._toolset import VERSION as TOOL_SERVER_VERSION

# Generous: two cores, and the whole suite may be running beside us.
HANG_GUARD_SECONDS = 30.0
PING_BODY = b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}'
PING_REQUEST = (
    b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Accept: application/json, text/event-stream\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(PING_BODY), PING_BODY)
)


def child_environ(**extra: str) -> dict[str, str]:
    """Our environment without anything that would change the server's defaults."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("STAKPAK_") and key != "container"
    }
    environ.update(extra)
    return environ


def kill_group(process: trio.Process) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


async def kill_group_async(process: trio.Process) -> None:
    kill_group(process)


class LineReader:
    """Lines of a child's output, kept in ``seen`` (an async iterator, not a generator, so that
    nothing is left unfinalised when a test stops reading early)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""
        self.seen: list[str] = []

    def __aiter__(self) -> LineReader:
        return self

    async def __anext__(self) -> str:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some()
            if not chunk:
                if not self._buffer:
                    raise StopAsyncIteration
                self._buffer += b"\n"
                break
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\n")
        line = raw.decode()
        self.seen.append(line)
        return line

    async def drain(self) -> None:
        async for _ in self:
            pass


@attrs.define(eq=False)
class ToolServerChild:
    process: trio.Process
    url: str
    ca_pem: str | None
    stdout: LineReader
    stderr: LineReader

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    def stderr_text(self) -> str:
        return "\n".join(self.stderr.seen)


@asynccontextmanager
async def running_tool_server(
    workdir: Path, *args: str, environ: Mapping[str, str]
) -> AsyncIterator[ToolServerChild]:
    """Spawn the tool server, wait for its announcement, drain its output, kill it at the end."""
    argv = [sys.executable, "-m", "trio_sandbox.tools", "--workdir", str(workdir), *args]
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(environ),
                start_new_session=True,
                check=False,
                deliver_cancel=kill_group_async,
            )
        )
        assert process.stdout is not None
        assert process.stderr is not None
        stdout, stderr = LineReader(process.stdout), LineReader(process.stderr)
        nursery.start_soon(stderr.drain)
        ca_pem: str | None = None
        if "--plain-http" in args:
            url = None
            async for line in stdout:
                if line.strip().startswith(STARTED_LINE_PREFIX):
                    url = line.strip().removeprefix(STARTED_LINE_PREFIX)
                    break
            assert url is not None, stdout.seen
        else:
            block = await read_ca_block(stdout, wait_for_server_url=True)
            assert block.server_url is not None
            url, ca_pem = block.server_url, block.ca_pem
        nursery.start_soon(stdout.drain)
        try:
            yield ToolServerChild(process, url, ca_pem, stdout, stderr)
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def mtls_tool_server(
    workdir: Path, *args: str
) -> AsyncIterator[tuple[ToolServerChild, MtlsIdentity]]:
    client = MtlsIdentity.generate_client()
    environ = child_environ(STAKPAK_MCP_PORT="0", STAKPAK_MCP_CLIENT_CA=client.ca_cert_pem())
    async with running_tool_server(workdir, *args, environ=environ) as child:
        yield child, client


def client_context(child: ToolServerChild, client: MtlsIdentity) -> ssl.SSLContext:
    assert child.ca_pem is not None
    return client.client_ssl_context(child.ca_pem)


async def wait_for_exit(pid: int) -> None:
    """Until ``pid`` has exited (a zombie counts). pidfd works for processes we did not spawn."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)


async def read_fifo(path: Path) -> str:
    """What one writer wrote to a FIFO (blocks until a writer comes and goes)."""
    return await trio.to_thread.run_sync(path.read_text, abandon_on_cancel=True)


# --- the contract: announcement and mTLS ------------------------------------------------------


async def test_prints_the_ca_block_with_the_real_port_then_serves_over_mtls(
    tmp_path: Path,
) -> None:
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with mtls_tool_server(tmp_path) as (child, client):
            assert child.url.startswith("https://127.0.0.1:")
            assert child.url.endswith("/mcp")
            assert child.port > 0
            assert child.ca_pem is not None
            assert "BEGIN CERTIFICATE" in child.ca_pem
            everything_printed = "\n".join(child.stdout.seen)
            assert "PRIVATE KEY" not in everything_printed
            assert "PRIVATE KEY" not in child.ca_pem
            async with open_mcp_client(child.url, ssl_context=client_context(child, client)) as mcp:
                tools = await mcp.list_tools()
                assert {tool.name for tool in tools} == ORIGINAL_TOOL_NAMES
                result = await mcp.call_tool(
                    "run_command", {"command": "pwd && echo hello from the sandbox"}
                )
            assert not result.is_error, result.text_content
            assert str(tmp_path) in result.text_content
            assert "hello from the sandbox" in result.text_content
            assert "[exit code 0]" in result.text_content
    assert "PRIVATE KEY" not in child.stderr_text()


async def test_serves_websocket_on_the_same_port(tmp_path: Path) -> None:
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with mtls_tool_server(tmp_path) as (child, client):
            ws_url = child.url.replace("https://", "wss://", 1)
            transport = websocket_transport(ws_url, ssl_context=client_context(child, client))
            async with open_mcp_client(transport) as mcp:
                assert {tool.name for tool in await mcp.list_tools()} == ORIGINAL_TOOL_NAMES
                result = await mcp.call_tool("run_command", {"command": "echo over websocket"})
            assert "over websocket" in result.text_content

            # The upgrade needs the client certificate too. (A raw exchange: trio-websocket's
            # client leaves its socket unclosed when the TLS handshake fails.)
            assert child.ca_pem is not None
            upgrade = websocket_upgrade_request()
            assert await http_exchange(child.port, _no_certificate(child.ca_pem), upgrade) == b""
            answer = await http_exchange(child.port, client_context(child, client), upgrade)
            assert answer.startswith(b"HTTP/1.1 101 ")


def websocket_upgrade_request() -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: mcp\r\n\r\n" % key
    )


async def http_exchange(port: int, context: ssl.SSLContext, request: bytes = PING_REQUEST) -> bytes:
    """Everything the server sends back to one request over TLS; b"" if it hangs up on us.

    A WebSocket upgrade is answered and then left open: reading stops after the headers."""
    stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=context)
    received = b""
    async with stream:
        try:
            await stream.send_all(request)
            while chunk := await stream.receive_some():
                received += chunk
                if received.startswith(b"HTTP/1.1 101 ") and b"\r\n\r\n" in received:
                    break
        except trio.BrokenResourceError:
            # A refusal (alert, reset), or the server's close without close_notify after an
            # answer (hypercorn is HTTPS-compatible): what arrived before it is the answer.
            pass
    return received


def _no_certificate(server_ca_pem: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=server_ca_pem)
    return context


@pytest.mark.parametrize("refused_client", ["no certificate", "another CA", "expired"])
async def test_refuses_clients_without_a_valid_certificate_quickly(
    tmp_path: Path, refused_client: str
) -> None:
    trusted = MtlsIdentity.generate_client()
    if refused_client == "expired":
        now = datetime.datetime.now(datetime.UTC)
        trusted = MtlsIdentity.generate_client(
            not_valid_before=now - datetime.timedelta(days=2),
            not_valid_after=now - datetime.timedelta(days=1),
        )
    environ = child_environ(STAKPAK_MCP_PORT="0", STAKPAK_MCP_CLIENT_CA=trusted.ca_cert_pem())
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with running_tool_server(tmp_path, environ=environ) as child:
            assert child.ca_pem is not None
            if refused_client == "no certificate":
                context = _no_certificate(child.ca_pem)
            elif refused_client == "another CA":
                context = MtlsIdentity.generate_client().client_ssl_context(child.ca_pem)
            else:
                context = trusted.client_ssl_context(child.ca_pem)
            # With TLS 1.3 the client's side of the handshake completes before the server has
            # checked the certificate, so the refusal shows as an alert or EOF on the first read.
            assert await http_exchange(child.port, context) == b""
            if refused_client != "expired":
                # Still healthy for a client that does hold a valid certificate: the same
                # exchange gets an HTTP answer.
                good = trusted.client_ssl_context(child.ca_pem)
                assert (await http_exchange(child.port, good)).startswith(b"HTTP/1.1 ")


# --- refusing to start, plain HTTP -------------------------------------------------------------


async def run_to_exit(*args: str, environ: Mapping[str, str]) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(HANG_GUARD_SECONDS):
        return await trio.run_process(
            [sys.executable, "-m", "trio_sandbox.tools", *args],
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            env=dict(environ),
            check=False,
        )


async def test_refuses_to_start_without_the_client_ca() -> None:
    done = await run_to_exit(environ=child_environ(STAKPAK_MCP_PORT="0"))
    assert done.returncode == 2
    assert done.stdout == b""
    assert b"STAKPAK_MCP_CLIENT_CA is not set" in done.stderr
    assert b"--plain-http" in done.stderr


async def test_refuses_to_start_with_a_client_ca_that_is_not_a_certificate() -> None:
    environ = child_environ(STAKPAK_MCP_PORT="0", STAKPAK_MCP_CLIENT_CA="not a PEM")
    done = await run_to_exit(environ=environ)
    assert done.returncode == 2
    assert done.stdout == b""
    assert b"STAKPAK_MCP_CLIENT_CA" in done.stderr
    assert b"Traceback" not in done.stderr


@pytest.mark.parametrize("port", ["http", "70000", "-1"])
async def test_refuses_a_bad_port(port: str) -> None:
    client_ca = MtlsIdentity.generate_client().ca_cert_pem()
    environ = child_environ(STAKPAK_MCP_PORT=port, STAKPAK_MCP_CLIENT_CA=client_ca)
    done = await run_to_exit(environ=environ)
    assert done.returncode == 2
    assert b"STAKPAK_MCP_PORT" in done.stderr


async def test_plain_http_refuses_a_non_loopback_bind() -> None:
    done = await run_to_exit("--plain-http", "--bind", "0.0.0.0", environ=child_environ())
    assert done.returncode == 2
    assert b"loopback only" in done.stderr


async def test_plain_http_binds_loopback_even_inside_a_sandbox(tmp_path: Path) -> None:
    environ = child_environ(STAKPAK_MCP_PORT="0", STAKPAK_SKIP_WARDEN="1")
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with running_tool_server(tmp_path, "--plain-http", environ=environ) as child:
            assert child.url.startswith("http://127.0.0.1:")
            assert not any("STAKPAK SERVER CA" in line for line in child.stdout.seen)
            async with open_mcp_client(child.url) as mcp:
                result = await mcp.call_tool("run_command", {"command": "echo plain"})
            assert "plain" in result.text_content


def test_binds_all_interfaces_only_inside_a_sandbox() -> None:
    assert default_bind({}) == "127.0.0.1"
    assert default_bind({"STAKPAK_SKIP_WARDEN": "1"}) == "0.0.0.0"
    assert default_bind({"STAKPAK_SKIP_WARDEN": "0"}) == "127.0.0.1"
    assert default_bind({"container": "podman"}) == "0.0.0.0"
    environ = {
        "STAKPAK_SKIP_WARDEN": "1",
        "STAKPAK_MCP_CLIENT_CA": "pem",
        "STAKPAK_MCP_PORT": "8080",
    }
    options = parse_options([], environ)
    assert (options.bind, options.port, options.client_ca_pem) == ("0.0.0.0", 8080, "pem")
    assert parse_options(["--bind", "::1"], environ).bind == "::1"
    assert parse_options(["--port", "9"], environ).port == 9
    with pytest.raises(ToolServerOptionsError):
        parse_options([], {"STAKPAK_MCP_PORT": "8080"})


# --- shutdown and cancellation ------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_signal_lets_the_call_in_flight_finish_then_exits_0(
    tmp_path: Path, signum: signal.Signals
) -> None:
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    command = f"echo go > {fifo}; sleep 0.5; echo finished after the signal"
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with mtls_tool_server(tmp_path) as (child, client):
            async with open_mcp_client(child.url, ssl_context=client_context(child, client)) as mcp:
                results = []

                async def call() -> None:
                    results.append(await mcp.call_tool("run_command", {"command": command}))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(call)
                    assert (await read_fifo(fifo)).strip() == "go"
                    child.process.send_signal(signum)
            assert "finished after the signal" in results[0].text_content
            assert "[exit code 0]" in results[0].text_content
            assert await child.process.wait() == 0
    assert "Traceback" not in child.stderr_text()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_signal_while_idle_exits_0(tmp_path: Path, signum: signal.Signals) -> None:
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with mtls_tool_server(tmp_path) as (child, _):
            child.process.send_signal(signum)
            assert await child.process.wait() == 0
    assert "Traceback" not in child.stderr_text()


async def test_client_going_away_kills_the_running_command_group(tmp_path: Path) -> None:
    fifo = tmp_path / "pids"
    os.mkfifo(fifo)
    # The shell and a grandchild in its group: both must die.
    command = f"sleep 600 & echo $$ $! > {fifo}; wait"
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with mtls_tool_server(tmp_path) as (child, client):
            context = client_context(child, client)
            async with open_mcp_client(
                child.url, ssl_context=context, protocol_version=LATEST_VERSION
            ) as mcp:
                assert mcp.stateless
                with trio.CancelScope() as call_scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(mcp.call_tool, "run_command", {"command": command})
                        shell_pid, sleep_pid = map(int, (await read_fifo(fifo)).split())
                        call_scope.cancel()
                await wait_for_exit(shell_pid)
                await wait_for_exit(sleep_pid)
                # The server itself carries on.
                result = await mcp.call_tool("run_command", {"command": "echo still here"})
                assert "still here" in result.text_content


# --- start-up weight (what is imported, not how long it takes: timing lives in benchmarks) ------


def test_tool_server_version_matches_the_package_metadata() -> None:
    assert importlib.metadata.version("trio_sandbox") == TOOL_SERVER_VERSION


def test_tool_server_does_not_import_client_side_or_validation_modules_at_start() -> None:
    unwanted = ("httpx", "trio_websocket", "jsonschema", "importlib.metadata", "opentelemetry")
    probe = (
        "import sys, trio_sandbox.tools._main\n"
        f"print(','.join(m for m in {unwanted!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


@asynccontextmanager
async def warming_server(workdir: Path) -> AsyncIterator[tuple[_WarmUp, McpClient]]:
    """A tool server in this process with its warm-up running, and a client of it."""
    async with open_tool_server(workdir=workdir, limits=ToolLimits()) as server:
        warm_up = _WarmUp()
        warm_up.install(server)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(warm_up.run)
            async with open_mcp_client(memory_transport(server)) as client:
                yield warm_up, client
            nursery.cancel_scope.cancel()


async def test_a_ping_after_the_first_listing_is_answered_once_the_server_is_warm(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """How a host asks for a warm spare: a ping before any listing is answered at once and
    warms nothing; one after the first listing starts the warm-up at once (not
    ``WARM_UP_DELAY`` later) and is answered when it is done."""
    async with warming_server(tmp_path) as (warm_up, client):
        await client.ping()
        assert not warm_up.asked.is_set()
        assert not warm_up.done.is_set()
        await client.list_tools()
        began = trio.current_time()
        await client.ping()
        assert warm_up.done.is_set()
        assert trio.current_time() - began < WARM_UP_DELAY
        # Warm, a ping is a ping; a second listing is the server's own again.
        await client.ping()
        assert len(await client.list_tools()) == len(ORIGINAL_TOOL_NAMES)


async def test_without_a_ping_the_server_warms_up_after_the_delay(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with warming_server(tmp_path) as (warm_up, client):
        await client.list_tools()
        listed = trio.current_time()
        await warm_up.done.wait()
        assert trio.current_time() - listed >= WARM_UP_DELAY
        assert not warm_up.asked.is_set()
