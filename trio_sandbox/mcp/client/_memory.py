"""The in-process transport: a client talks to an :class:`McpServer` of the same process.

It lives with the client because it is a client transport (a :class:`TransportFactory` for
:func:`open_mcp_client`, like ``stdio_transport`` which also starts its server); the server side
is a session of the channel kind that stdio and WebSocket serve (``open_channel_session``), so
an in-process server behaves as it would behind a socket: cancellation, server-to-client
requests, notifications, the bound on requests in flight.

Each request is served in its caller's own task, as the HTTP transport reads a response in the
caller's task: no reader task, no hand-offs between tasks, and cancelling the caller cancels the
request (as closing an HTTP response stream does). What the server sends while serving it, and
its answer, is delivered to the client in that task too.

No JSON is written: messages cross as objects. Each is copied on its way (``copy_message``:
what an encode and decode would give), so that neither side sees the other's later mutations of
a dict or list it sent or received; requests keep the bound on one message that the other
transports apply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import attrs
import trio

from ..protocol._errors import McpConnectionError, McpError
from ..protocol._jsonrpc import MAX_MESSAGE_BYTES, copy_message
from ..protocol._messages import (
    INTERNAL_ERROR,
    ErrorResponse,
    Message,
    Request,
    RequestId,
    Response,
)
from ..server._duplex import ChannelSession, open_channel_session
from ..server._server import McpServer
from ._transport import ClientInbox, TransportFactory


@attrs.define(eq=False)
class _Serving:
    """One request being served in its caller's task."""

    request_id: RequestId
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    answered: bool = False
    # The caller's own error while a message was delivered to it (a progress callback's).
    failure: Exception | None = None


@attrs.define(eq=False)
class InProcessTransport:
    """A client transport that serves each request in the sender's task (see the module)."""

    target: str
    _channel: ChannelSession
    _inbox: ClientInbox
    protocol_version: str | None = None
    closed: bool = False
    # Cancelling the caller's task cancels its request there: no notice needs to be sent.
    closes_stream_to_cancel: bool = True
    sends_headers: bool = False
    # The server's bound on one message: over it, the request fails here, the channel stays.
    max_message_bytes: int = MAX_MESSAGE_BYTES
    # The requests being served now, by task (innermost last: a callback may call again),
    # all cancelled when the transport closes.
    _serving: dict[trio.lowlevel.Task, list[_Serving]] = attrs.field(factory=dict)

    def set_protocol_version(self, version: str | None) -> None:
        self.protocol_version = version

    async def session_ready(self) -> None:
        pass  # unsolicited messages are delivered as they are sent

    async def send(self, message: Message, headers: Mapping[str, str]) -> None:
        if self.closed:
            raise McpConnectionError(self.target, "the connection is closed")
        copied = copy_message(message, self.max_message_bytes)
        if not isinstance(copied, Request):
            self._channel.take_message(copied)
            return
        serving = _Serving(copied.id)
        stack = self._serving.setdefault(trio.lowlevel.current_task(), [])
        stack.append(serving)
        try:
            with serving.scope:
                await self._channel.serve_now(copied)
        finally:
            stack.pop()
            if not stack:
                del self._serving[trio.lowlevel.current_task()]
        if serving.failure is not None:
            # As over HTTP, where the caller's error ends its reading and so its request.
            raise serving.failure
        if serving.scope.cancelled_caught:
            raise McpConnectionError(self.target, "the in-process server closed")
        if not serving.answered:
            # Ended without an answer (the session closed under it): say so rather than
            # leave the caller waiting for one.
            refusal = McpError(INTERNAL_ERROR, "the in-process server ended the request unanswered")
            await self._inbox.deliver(refusal.response_for(copied.id))

    async def deliver(self, message: Message) -> None:
        """What the server sends: to the client, in the task that sends it."""
        stack = self._serving.get(trio.lowlevel.current_task())
        serving = stack[-1] if stack else None
        if serving is None:
            await self._inbox.deliver(copy_message(message))
            return
        if isinstance(message, (Response, ErrorResponse)) and message.id == serving.request_id:
            serving.answered = True
        try:
            await self._inbox.deliver(copy_message(message))
        except Exception as exc:
            # The caller's own code failed (it runs here, in its task): the error is the
            # caller's, not the server's, and the request ends.
            serving.failure = exc
            serving.scope.cancel()

    def close(self) -> None:
        self.closed = True
        for stack in self._serving.values():
            for serving in stack:
                serving.scope.cancel()


def memory_transport(server: McpServer, *, name: str = "in-process") -> TransportFactory:
    """A transport factory for :func:`open_mcp_client` that serves ``server`` in this process."""

    @asynccontextmanager
    async def open_transport(inbox: ClientInbox) -> AsyncIterator[InProcessTransport]:
        transport: InProcessTransport | None = None

        async def deliver(message: Message) -> None:
            assert transport is not None
            await transport.deliver(message)

        async with open_channel_session(server, deliver) as channel:
            transport = InProcessTransport(f"memory://{name}", channel, inbox)
            try:
                yield transport
            finally:
                transport.close()
                inbox.connection_lost(
                    McpConnectionError(transport.target, "the connection is closed")
                )

    return open_transport
