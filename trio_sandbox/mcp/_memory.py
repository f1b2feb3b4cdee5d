"""An in-process transport: a client talks to an :class:`McpServer` through memory channels.

It runs the same duplex session loop as stdio and WebSocket, so an in-process server behaves as
it would behind a socket (cancellation, server-to-client requests, notifications).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from ._duplex import serve_duplex
from ._duplex_client import DuplexTransport, pump_incoming
from ._server import McpServer
from ._transport import ClientInbox, TransportFactory


async def _drain(channel: trio.MemoryReceiveChannel[bytes]) -> AsyncIterator[bytes]:
    async for payload in channel:
        yield payload


def memory_transport(server: McpServer, *, name: str = "in-process") -> TransportFactory:
    """A transport factory for :func:`open_mcp_client` that serves ``server`` in this process."""

    @asynccontextmanager
    async def open_transport(inbox: ClientInbox) -> AsyncIterator[DuplexTransport]:
        to_server, server_inbox = trio.open_memory_channel[bytes](math.inf)
        to_client, client_inbox = trio.open_memory_channel[bytes](math.inf)

        async def run_server() -> None:
            async with to_client:
                await serve_duplex(server, _drain(server_inbox), to_client.send)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_server)
            transport = DuplexTransport(f"memory://{name}", to_server.send)
            nursery.start_soon(pump_incoming, transport, _drain(client_inbox), inbox)
            try:
                yield transport
            finally:
                # Ending the server's input ends its session loop, which ends the client's input.
                await to_server.aclose()

    return open_transport
