"""The stdio client transport: spawn the server as a child process and speak MCP on its
stdin/stdout.

The child runs in its own process group, so that stopping it stops everything it started.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import trio

from ...concurrency import stop_process_group, stopping_process_group
from ..protocol._errors import McpConnectionError
from ..protocol._lines import read_lines
from ._duplex import ChannelTransport, json_channel_transport, pump_incoming
from ._transport import ClientInbox, TransportFactory


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
    async def open_transport(inbox: ClientInbox) -> AsyncIterator[ChannelTransport]:
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

            transport = json_channel_transport(target, send_line)
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
