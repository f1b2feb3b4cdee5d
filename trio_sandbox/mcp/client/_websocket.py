"""The WebSocket client transport (trio-websocket, subprotocol ``mcp``)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio_websocket

from ..protocol._errors import McpConnectionError
from ..protocol._jsonrpc import MAX_MESSAGE_BYTES
from ..protocol._versions import WEBSOCKET_SUBPROTOCOL
from ._duplex import ChannelTransport, json_channel_transport, pump_incoming
from ._transport import ClientInbox, TransportFactory


def websocket_transport(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout: float = 10.0,
    max_message_size: int = MAX_MESSAGE_BYTES,
) -> TransportFactory:
    """A WebSocket transport. The connect timeout is short on purpose: trio-websocket's default
    waits 60 s when a TLS handshake fails."""

    @asynccontextmanager
    async def open_transport(inbox: ClientInbox) -> AsyncIterator[ChannelTransport]:
        connected = False
        try:
            async with trio_websocket.open_websocket_url(
                url,
                ssl_context=ssl_context,
                subprotocols=[WEBSOCKET_SUBPROTOCOL],
                connect_timeout=connect_timeout,
                disconnect_timeout=2,
                max_message_size=max_message_size,
            ) as ws:
                connected = True
                if ws.subprotocol != WEBSOCKET_SUBPROTOCOL:
                    raise McpConnectionError(url, "the server did not accept the mcp subprotocol")

                async def send_text(data: bytes) -> None:
                    try:
                        await ws.send_message(data.decode())
                    except trio_websocket.ConnectionClosed as exc:
                        raise trio.BrokenResourceError(str(exc)) from exc

                async def frames() -> AsyncIterator[bytes | str]:
                    while True:
                        try:
                            yield await ws.get_message()
                        except trio_websocket.ConnectionClosed:
                            return

                transport = json_channel_transport(
                    url, send_text, max_message_bytes=max_message_size
                )
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(pump_incoming, transport, frames(), inbox)
                    yield transport
                    nursery.cancel_scope.cancel()
        except (OSError, trio.TooSlowError, trio_websocket.HandshakeError) as exc:
            if connected:
                raise
            raise McpConnectionError(url, f"{type(exc).__name__}: {exc}") from exc

    return open_transport
