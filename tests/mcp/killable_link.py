"""An in-memory MCP link that the test can cut at any moment, like a server killed mid-call.

The real server session loop (serve_duplex) and the real client reader run on both ends; only the
wire is memory channels, so exact timing is under a virtual clock.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from trio_sandbox.mcp import ClientInbox, McpServer, TransportFactory, serve_duplex
from trio_sandbox.mcp.client._duplex import ChannelTransport, json_channel_transport, pump_incoming


async def _drain(channel: trio.MemoryReceiveChannel[bytes]) -> AsyncIterator[bytes]:
    async for payload in channel:
        yield payload


@attrs.define(eq=False)
class KillableLink:
    server: McpServer
    _cut: trio.Event = attrs.field(factory=trio.Event)

    def kill(self) -> None:
        """Cut the wire both ways: the server's session ends, the client's reader sees the end."""
        self._cut.set()

    @property
    def killed(self) -> bool:
        return self._cut.is_set()

    def factory(self) -> TransportFactory:
        @asynccontextmanager
        async def open_transport(inbox: ClientInbox) -> AsyncIterator[ChannelTransport]:
            to_server, server_inbox = trio.open_memory_channel[bytes](math.inf)
            to_client, client_inbox = trio.open_memory_channel[bytes](math.inf)

            async def send_to_client(data: bytes) -> None:
                if self.killed:
                    raise trio.BrokenResourceError("the link was cut")
                await to_client.send(data)

            async def send_to_server(data: bytes) -> None:
                if self.killed:
                    raise trio.BrokenResourceError("the link was cut")
                await to_server.send(data)

            async def run_server() -> None:
                # The server "died": what it still tried to say is lost.
                with contextlib.suppress(trio.BrokenResourceError):
                    await serve_duplex(self.server, _drain(server_inbox), send_to_client)

            async def cut_when_killed() -> None:
                await self._cut.wait()
                to_server.close()
                to_client.close()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_server)
                nursery.start_soon(cut_when_killed)
                transport = json_channel_transport("memory://killable", send_to_server)
                nursery.start_soon(pump_incoming, transport, _drain(client_inbox), inbox)
                try:
                    yield transport
                finally:
                    to_server.close()
                    nursery.cancel_scope.cancel()

        return open_transport
