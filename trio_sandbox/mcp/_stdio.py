"""MCP over stdio: newline-delimited JSON, one message per line, both sides.

The client spawns the server as a child process in its own process group, so that stopping it
stops everything it started. The server reads its stdin and writes nothing but messages to its
stdout.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Final

import trio

from ..concurrency import stop_process_group, stopping_process_group
from ._duplex import serve_duplex
from ._duplex_client import DuplexTransport, pump_incoming
from ._server import McpServer
from ._transport import ClientInbox, McpConnectionError, TransportFactory

MAX_LINE_BYTES: Final = 16 * 1024 * 1024


class LineTooLongError(trio.BrokenResourceError):
    """A peer sent a line longer than the limit: the channel cannot be trusted any more."""


async def read_lines(
    stream: trio.abc.ReceiveStream, max_line_bytes: int = MAX_LINE_BYTES
) -> AsyncIterator[bytes]:
    """Lines (without their newline) until end of stream; blank lines are skipped."""
    buffer = bytearray()
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            if buffer.strip():
                yield bytes(buffer)
            return
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end]).rstrip(b"\r")
            del buffer[: end + 1]
            if line.strip():
                yield line
        if len(buffer) > max_line_bytes:
            raise LineTooLongError(f"a line longer than {max_line_bytes} bytes")


def stdio_transport(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    grace: float = 2.0,
) -> TransportFactory:
    """Spawn ``argv`` and speak MCP over its stdin/stdout; its stderr is inherited."""
    target = " ".join(argv)

    @asynccontextmanager
    async def open_transport(inbox: ClientInbox) -> AsyncIterator[DuplexTransport]:
        async with trio.open_nursery() as nursery:
            try:
                process: trio.Process = await nursery.start(
                    functools.partial(
                        trio.run_process,
                        list(argv),
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        check=False,
                        env=dict(env) if env is not None else None,
                        cwd=cwd,
                        start_new_session=True,
                        deliver_cancel=stopping_process_group(grace=grace),
                    )
                )
            except OSError as exc:
                raise McpConnectionError(target, f"could not start: {exc}") from exc
            assert process.stdin is not None
            assert process.stdout is not None
            stdin = process.stdin

            async def send_line(data: bytes) -> None:
                await stdin.send_all(data + b"\n")

            transport = DuplexTransport(target, send_line)
            nursery.start_soon(pump_incoming, transport, read_lines(process.stdout), inbox)
            try:
                yield transport
            finally:
                # Closing stdin asks the server to stop; the process group is stopped after a
                # grace, and SIGKILLed even when the server is gone already (it may have died
                # and left children behind).
                with trio.CancelScope(shield=True):
                    await stdin.aclose()
                    with trio.move_on_after(grace):
                        await process.wait()
                    await stop_process_group(process, grace=grace)
                nursery.cancel_scope.cancel()

    return open_transport


async def serve_stdio(
    server: McpServer,
    *,
    stdin: trio.abc.ReceiveStream | None = None,
    stdout: trio.abc.SendStream | None = None,
) -> None:
    """Serve one MCP session on stdin/stdout until stdin ends."""
    owned: list[trio.lowlevel.FdStream] = []
    if stdin is None:
        stdin = trio.lowlevel.FdStream(os.dup(0))
        owned.append(stdin)
    if stdout is None:
        stdout = trio.lowlevel.FdStream(os.dup(1))
        owned.append(stdout)
    output = stdout

    async def send_line(data: bytes) -> None:
        await output.send_all(data + b"\n")

    try:
        await serve_duplex(server, read_lines(stdin), send_line)
    finally:
        for stream in owned:
            with trio.CancelScope(shield=True):
                await stream.aclose()
