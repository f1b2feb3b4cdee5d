"""Drive the kubernetes back end against the double: the warden as a child, kubectl, the
official Python client, and a relay in front of the double that can be cut.

Real processes run here, so nothing is timed with a virtual clock; ``HANG_GUARD_SECONDS`` only
turns a hang into a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from typing import Any

import attrs
import trio

from tests.kubernetes.kube_double import KubeDouble
from trio_sandbox.contract import CLIENT_CA_VARIABLE, MCP_PORT_VARIABLE, SKIP_WARDEN_VARIABLE
from trio_sandbox.tls import CaBlock, MtlsIdentity, read_ca_block

HANG_GUARD_SECONDS = 90
IMAGE = "trio-sandbox:test"
WARDEN = (sys.executable, "-m", "trio_sandbox.warden")
TOOL_SERVER = (sys.executable, "-m", "trio_sandbox.tools")
# A server that echoes each line it gets, upper-cased, after printing one READY line.
ECHO_SERVER = """
import socket, sys
server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1]))); server.listen(8)
print("READY", flush=True)
while True:
    conn, _ = server.accept()
    with conn, conn.makefile("rwb") as stream:
        for line in stream:
            stream.write(line.upper()); stream.flush()
"""


def warden_env(double: KubeDouble, **extra: str) -> dict[str, str]:
    """The warden's environment: the double's kubeconfig, this interpreter as the image's."""
    env = dict(os.environ)
    env.update(
        {
            "KUBECONFIG": str(double.kubeconfig),
            "TRIO_SANDBOX_K8S_PYTHON": sys.executable,
            # The start is bounded by the test, not by the back end's five minutes.
            "TRIO_SANDBOX_K8S_START_TIMEOUT": "30",
        }
    )
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wrap_argv(*options: str, command: Sequence[str], image: str = IMAGE) -> list[str]:
    return [*WARDEN, "wrap", "--backend", "kubernetes", *options, image, "--", *command]


async def run_warden(
    double: KubeDouble, *options: str, command: Sequence[str], image: str = IMAGE, **env: str
) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(HANG_GUARD_SECONDS):
        return await trio.run_process(
            wrap_argv(*options, command=command, image=image),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=warden_env(double, **env),
        )


@attrs.define(eq=False)
class RunningWarden:
    """A warden child whose stdout is read line by line (the contract's CA block first)."""

    process: trio.Process
    lines: trio.MemoryReceiveChannel[str]
    stderr: bytearray

    async def wait(self) -> int:
        with trio.fail_after(HANG_GUARD_SECONDS):
            return await self.process.wait()

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    async def ca_block(self) -> CaBlock:
        with trio.fail_after(HANG_GUARD_SECONDS):
            return await read_ca_block(self.lines, wait_for_server_url=True)

    async def line(self) -> str:
        with trio.fail_after(HANG_GUARD_SECONDS):
            return await self.lines.receive()


async def _pump_lines(stream: trio.abc.ReceiveStream, send: trio.MemorySendChannel[str]) -> None:
    buffer = b""
    async with send:
        while chunk := await stream.receive_some(65536):
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                await send.send(line.decode())


async def _pump_bytes(stream: trio.abc.ReceiveStream, sink: bytearray) -> None:
    while chunk := await stream.receive_some(65536):
        sink.extend(chunk)


@contextlib.asynccontextmanager
async def start_warden(
    double: KubeDouble, *options: str, command: Sequence[str], image: str = IMAGE, **env: str
) -> AsyncIterator[RunningWarden]:
    """The warden running; on the way out it gets SIGINT (if still running) and is awaited."""
    send, receive = trio.open_memory_channel[str](1000)
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                wrap_argv(*options, command=command, image=image),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                check=False,
                env=warden_env(double, **env),
            )
        )
        assert process.stdout is not None
        assert process.stderr is not None
        running = RunningWarden(process, receive, bytearray())
        nursery.start_soon(_pump_lines, process.stdout, send)
        nursery.start_soon(_pump_bytes, process.stderr, running.stderr)
        try:
            yield running
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)
                with trio.fail_after(HANG_GUARD_SECONDS):
                    await process.wait()


def contract_env(identity: MtlsIdentity, port: int = 8080) -> list[str]:
    """``--env`` options the host passes (DESIGN.md §2)."""
    return [
        *("--env", f"{SKIP_WARDEN_VARIABLE}=1"),
        *("--env", f"{MCP_PORT_VARIABLE}={port}"),
        *("--env", f"{CLIENT_CA_VARIABLE}={identity.ca_cert_pem()}"),
    ]


async def kubectl(
    double: KubeDouble, *args: str, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """The kubectl binary of this machine against the double."""
    with trio.fail_after(HANG_GUARD_SECONDS):
        result = await trio.run_process(
            ["kubectl", "--kubeconfig", str(double.kubeconfig), "--request-timeout=20s", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    if check:
        assert result.returncode == 0, result.stderr.decode()
    return result


async def kubectl_json(double: KubeDouble, *args: str) -> Any:
    return json.loads((await kubectl(double, *args, "-o", "json")).stdout)


async def official_client(double: KubeDouble, use: Callable[[Any], Any]) -> Any:
    """Run ``use(api_client)`` with the official ``kubernetes`` client (synchronous) in a thread."""

    def run() -> Any:
        import kubernetes.config

        # Untyped in the package's stubs; it returns a kubernetes.client.ApiClient.
        new_client: Any = kubernetes.config.new_client_from_config
        api_client = new_client(config_file=str(double.kubeconfig))
        with api_client:
            return use(api_client)

    with trio.fail_after(HANG_GUARD_SECONDS):
        return await trio.to_thread.run_sync(run)


async def wait_until(double: KubeDouble, condition: Callable[[], bool], *, what: str) -> None:
    """Wait for a condition on the double's objects (checked at each change of its store)."""
    with trio.fail_after(HANG_GUARD_SECONDS):
        while not condition():
            await double.store.changed.wait()
    assert condition(), what


@attrs.define(eq=False)
class CuttableRelay:
    """A TCP relay in front of the double's port that can be cut (the API server "gone")."""

    target_port: int
    port: int = 0
    _scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)

    def cut(self) -> None:
        self._scope.cancel()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        with self._scope:
            async with trio.open_nursery() as nursery:
                task_status.started()
                await trio.serve_listeners(self._relay, listeners, handler_nursery=nursery)

    async def _relay(self, client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        async with client, server, trio.open_nursery() as nursery:

            async def pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    while data := await source.receive_some(65536):
                        await sink.send_all(data)
                nursery.cancel_scope.cancel()

            nursery.start_soon(pump, client, server)
            nursery.start_soon(pump, server, client)


def named(pods: list[dict[str, Any]]) -> list[str]:
    return sorted(pod["metadata"]["name"] for pod in pods)
