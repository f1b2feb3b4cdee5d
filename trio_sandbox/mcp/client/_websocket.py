"""The WebSocket client transport (trio-websocket, subprotocol ``mcp``)."""

from __future__ import annotations

import math
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import trio
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.events import BytesMessage, Ping, RejectConnection, TextMessage

from ...concurrency import single_error
from ..protocol._errors import McpConnectionError, McpHttpStatusError
from ..protocol._jsonrpc import MAX_MESSAGE_BYTES
from ..protocol._versions import WEBSOCKET_SUBPROTOCOL
from ._duplex import ChannelTransport, json_channel_transport, pump_incoming
from ._transport import ClientInbox, TransportFactory

# How long leaving waits for the server to answer the closing handshake.
DISCONNECT_TIMEOUT: Final = 2.0
# At most one ping a server sends in this many seconds is answered (RFC 6455 lets an endpoint
# skip pongs): a flood of pings must not cost a TLS record and a send each.
PONG_INTERVAL: Final = 0.05


class _GuardedConnection(trio_websocket.WebSocketConnection):
    """trio-websocket's client connection with bounds of ours against the server: the answer to
    a refused upgrade is its status (its body, unbounded and maybe never ending, is not read),
    pongs are rate-limited, and a text message's size is counted in UTF-8 bytes, not
    characters. (Private hooks of trio-websocket 0.12; the tests pin each behaviour.)"""

    _last_pong = -math.inf

    async def _handle_reject_connection_event(self, event: RejectConnection) -> None:
        raise trio_websocket.ConnectionRejected(event.status_code, tuple(event.headers), None)

    async def _handle_ping_event(self, event: Ping) -> None:
        now = trio.current_time()
        if now - self._last_pong >= PONG_INTERVAL:
            self._last_pong = now
            await super()._handle_ping_event(event)

    async def _handle_message_event(self, event: BytesMessage | TextMessage) -> None:
        if isinstance(event, TextMessage) and not event.data.isascii():
            self._message_size += len(event.data.encode()) - len(event.data)
        await super()._handle_message_event(event)


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
        handshake_done = False
        try:
            with single_error():
                async with trio.open_nursery() as nursery:
                    ws = _GuardedConnection(
                        stream,
                        WSConnection(ConnectionType.CLIENT),
                        host=host_header,
                        path=resource,
                        client_subprotocols=[WEBSOCKET_SUBPROTOCOL],
                        max_message_size=max_message_size
                        if max_received_size is None
                        else max_received_size,
                    )
                    reader_ended = trio.Event()

                    async def read() -> None:
                        try:
                            await ws._reader_task()
                        finally:
                            reader_ended.set()

                    nursery.start_soon(read)
                    try:
                        with trio.fail_after(connect_timeout):
                            await _first_of(ws._open_handshake, reader_ended)
                    except (trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
                        raise McpConnectionError(url, f"{type(exc).__name__}: {exc}") from exc
                    if not ws._open_handshake.is_set():
                        raise McpConnectionError(
                            url, "the connection ended before the server answered the upgrade"
                        )
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
                    handshake_done = True
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
        except McpConnectionError:
            raise
        except Exception as exc:
            if handshake_done:
                raise
            # A malformed answer to the upgrade (a bad Sec-WebSocket-Accept, a broken head)
            # fails in the library's reader as an h11 or wsproto protocol error.
            raise McpConnectionError(
                url, f"the upgrade failed: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            await trio.aclose_forcefully(stream)

    return open_transport


async def _first_of(*events: trio.Event) -> None:
    """Wait until one of ``events`` is set."""
    async with trio.open_nursery() as nursery:

        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(wait, event)
