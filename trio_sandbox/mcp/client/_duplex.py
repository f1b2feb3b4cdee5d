"""The client side of message channels: JSON texts (WebSocket frames, stdio lines), or message
objects in one process (the memory transport).

Requests are written and return at once; one reader task delivers whatever the server sends and
reports the end of the channel so that waiting callers fail instead of hanging.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import attrs
import trio

from ..protocol._errors import McpConnectionError, MessageDecodeError
from ..protocol._jsonrpc import MAX_MESSAGE_BYTES, decode_message, dump_bounded, parse_json
from ..protocol._messages import Message
from ._transport import ClientInbox

logger = logging.getLogger("trio_sandbox.mcp.duplex_client")


@attrs.define(eq=False)
class ChannelTransport:
    """A client transport on a message channel: ``send_message`` puts one message on it (as
    JSON text, or as a copy of the object)."""

    target: str
    _send_message: Callable[[Message], Awaitable[None]]
    protocol_version: str | None = None
    closed: bool = False
    # A message channel has no response stream to close: cancellation is always said.
    closes_stream_to_cancel: bool = False
    sends_headers: bool = False
    # The server's bound on one message: over it, the request fails here, the channel stays.
    max_message_bytes: int = MAX_MESSAGE_BYTES
    _lock: trio.Lock = attrs.field(factory=trio.Lock)

    def set_protocol_version(self, version: str | None) -> None:
        self.protocol_version = version

    async def session_ready(self) -> None:
        pass  # the channel already carries unsolicited messages

    async def send(self, message: Message, headers: Mapping[str, str]) -> None:
        if self.closed:
            raise McpConnectionError(self.target, "the connection is closed")
        async with self._lock:
            try:
                await self._send_message(message)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.closed = True
                raise McpConnectionError(self.target, f"{type(exc).__name__}: {exc}") from exc


def json_channel_transport(
    target: str,
    send_bytes: Callable[[bytes], Awaitable[None]],
    *,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> ChannelTransport:
    """A transport that writes each message as one JSON text (a frame, a line)."""

    async def send_json(message: Message) -> None:
        await send_bytes(dump_bounded(message, transport.max_message_bytes))

    transport = ChannelTransport(target, send_json, max_message_bytes=max_message_bytes)
    return transport


async def pump_incoming(
    transport: ChannelTransport, incoming: AsyncIterator[bytes | str], inbox: ClientInbox
) -> None:
    """Deliver every message of a channel of JSON texts; when it ends, fail whoever still waits."""
    await pump_messages(transport, _decoded(transport, incoming), inbox)


async def _decoded(
    transport: ChannelTransport, incoming: AsyncIterator[bytes | str]
) -> AsyncIterator[Message]:
    async for payload in incoming:
        try:
            yield decode_message(parse_json(payload))
        except MessageDecodeError as exc:
            logger.warning("ignoring a message from %s: %s", transport.target, exc.message)


async def pump_messages(
    transport: ChannelTransport, incoming: AsyncIterator[Message], inbox: ClientInbox
) -> None:
    """Deliver every incoming message; when the channel ends, fail whoever still waits."""
    reason = "the server closed the connection"
    try:
        async for message in incoming:
            await inbox.deliver(message)
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    finally:
        transport.closed = True
        inbox.connection_lost(McpConnectionError(transport.target, reason))
