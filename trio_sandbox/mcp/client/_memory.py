"""The in-process transport: a client talks to an :class:`McpServer` of the same process.

It lives with the client because it is a client transport (a :class:`TransportFactory` for
:func:`open_mcp_client`, like ``stdio_transport`` which also starts its server); the server side
needs nothing from it but :func:`serve_messages`, the loop stdio and WebSocket serve with, so an
in-process server behaves as it would behind a socket (cancellation, server-to-client requests,
notifications).

No JSON is written: messages cross as objects. Each is copied on its way (``copy_message``:
what an encode and decode would give), so that neither side sees the other's later mutations of
a dict or list it sent or received; requests keep the bound on one message that the other
transports apply.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from ..protocol._jsonrpc import copy_message
from ..protocol._messages import Message
from ..server._duplex import serve_messages
from ..server._server import McpServer
from ._duplex import ChannelTransport, pump_messages
from ._transport import ClientInbox, TransportFactory


async def _drain(channel: trio.MemoryReceiveChannel[Message]) -> AsyncIterator[Message]:
    async for message in channel:
        yield message


def memory_transport(server: McpServer, *, name: str = "in-process") -> TransportFactory:
    """A transport factory for :func:`open_mcp_client` that serves ``server`` in this process."""

    @asynccontextmanager
    async def open_transport(inbox: ClientInbox) -> AsyncIterator[ChannelTransport]:
        to_server, server_inbox = trio.open_memory_channel[Message](math.inf)
        to_client, client_inbox = trio.open_memory_channel[Message](math.inf)

        async def send_to_server(message: Message) -> None:
            await to_server.send(copy_message(message, transport.max_message_bytes))

        async def send_to_client(message: Message) -> None:
            await to_client.send(copy_message(message))

        async def run_server() -> None:
            async with to_client:
                await serve_messages(server, _drain(server_inbox), send_to_client)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_server)
            transport = ChannelTransport(f"memory://{name}", send_to_server)
            nursery.start_soon(pump_messages, transport, _drain(client_inbox), inbox)
            try:
                yield transport
            finally:
                # Ending the server's input ends its session loop, which ends the client's input.
                await to_server.aclose()

    return open_transport
