"""The WebSocket client transport (trio-websocket, subprotocol ``mcp``)."""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import trio
import trio_websocket

from ...concurrency import single_error
from ..protocol._errors import McpConnectionError, McpHttpStatusError
from ..protocol._jsonrpc import MAX_MESSAGE_BYTES
from ..protocol._versions import WEBSOCKET_SUBPROTOCOL
from ._duplex import ChannelTransport, json_channel_transport, pump_incoming
from ._transport import ClientInbox, TransportFactory

# How long leaving waits for the server to answer the closing handshake.
DISCONNECT_TIMEOUT: Final = 2.0


def websocket_transport(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout: float = 10.0,
    max_message_size: int = MAX_MESSAGE_BYTES,
    max_received_size: int | None = None,
) -> TransportFactory:
    """A WebSocket transport. The connect timeout is short on purpose: trio-websocket's default
    waits 60 s when a TLS handshake fails.

    ``max_message_size`` bounds what is sent (the server's bound) and, unless
    ``max_received_size`` is given, what is received. A server that answers the upgrade with
    an HTTP status instead raises :class:`McpHttpStatusError` (it may speak Streamable HTTP
    only)."""

    parts = urllib.parse.urlsplit(url)
    hostname = parts.hostname
    if parts.scheme not in ("ws", "wss") or hostname is None:
        raise ValueError(f"not a WebSocket URL: {url!r}")
    secure = parts.scheme == "wss"
    if not secure and ssl_context is not None:
        raise ValueError("ssl_context applies to a wss:// URL")
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rpartition("@")[2]
    context = ssl_context or (ssl.create_default_context() if secure else None)

    async def open_stream() -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
        if context is None:
            return await trio.open_tcp_stream(hostname, port)
        return await trio.open_ssl_over_tcp_stream(
            hostname, port, ssl_context=context, https_compatible=True
        )

    @asynccontextmanager
    async def open_transport(inbox: ClientInbox) -> AsyncIterator[ChannelTransport]:
        # The stream is ours to close: trio-websocket leaves a rejected connection's socket
        # open.
        try:
            with trio.fail_after(connect_timeout):
                stream = await open_stream()
        except (OSError, trio.TooSlowError) as exc:
            raise McpConnectionError(url, f"{type(exc).__name__}: {exc}") from exc
        try:
            with single_error():
                async with trio.open_nursery() as nursery:
                    try:
                        with trio.fail_after(connect_timeout):
                            ws = await trio_websocket.wrap_client_stream(
                                nursery,
                                stream,
                                host_header,
                                resource,
                                subprotocols=[WEBSOCKET_SUBPROTOCOL],
                                max_message_size=max_message_size
                                if max_received_size is None
                                else max_received_size,
                            )
                    except (trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
                        raise McpConnectionError(url, f"{type(exc).__name__}: {exc}") from exc
                    if ws.subprotocol != WEBSOCKET_SUBPROTOCOL:
                        raise McpConnectionError(
                            url, "the server did not accept the mcp subprotocol"
                        )

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
                    nursery.start_soon(pump_incoming, transport, frames(), inbox)
                    try:
                        yield transport
                    finally:
                        # Not shielded: a cancelled client (a sandbox being stopped) closes
                        # its stream at once instead of waiting for the server's answer.
                        with trio.move_on_after(DISCONNECT_TIMEOUT):
                            await ws.aclose()
                        nursery.cancel_scope.cancel()
        except trio_websocket.ConnectionRejected as exc:
            raise McpHttpStatusError(url, exc.status_code, exc.body or b"") from exc
        except trio_websocket.HandshakeError as exc:
            raise McpConnectionError(url, f"{type(exc).__name__}: {exc}") from exc
        finally:
            await trio.aclose_forcefully(stream)

    return open_transport
