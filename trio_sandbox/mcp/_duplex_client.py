"""The client side of message-oriented channels (WebSocket frames, stdio lines).

Requests are written and return at once; one reader task delivers whatever the server sends and
reports the end of the channel so that waiting callers fail instead of hanging.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import attrs
import trio

from ._jsonrpc import (
    MAX_MESSAGE_BYTES,
    Message,
    MessageDecodeError,
    decode_message,
    dump_bounded,
    parse_json,
)
from ._transport import ClientInbox, McpConnectionError

logger = logging.getLogger("trio_sandbox.mcp.duplex_client")


@attrs.define(eq=False)
class DuplexTransport:
    target: str
    _send_bytes: Callable[[bytes], Awaitable[None]]
    protocol_version: str | None = None
    closed: bool = False
    # A message channel has no response stream to close: cancellation is always said.
    closes_stream_to_cancel: bool = False
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
        data = dump_bounded(message, self.max_message_bytes)
        async with self._lock:
            try:
                await self._send_bytes(data)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.closed = True
                raise McpConnectionError(self.target, f"{type(exc).__name__}: {exc}") from exc


async def pump_incoming(
    transport: DuplexTransport, incoming: AsyncIterator[bytes | str], inbox: ClientInbox
) -> None:
    """Deliver every incoming message; when the channel ends, fail whoever still waits."""
    reason = "the server closed the connection"
    try:
        async for payload in incoming:
            try:
                message = decode_message(parse_json(payload))
            except MessageDecodeError as exc:
                logger.warning("ignoring a message from %s: %s", transport.target, exc.message)
                continue
            await inbox.deliver(message)
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    finally:
        transport.closed = True
        inbox.connection_lost(McpConnectionError(transport.target, reason))
