"""The in-process transport: a client talks to an :class:`McpServer` of the same process.

It lives with the client because it is a client transport (a :class:`TransportFactory` for
:func:`open_mcp_client`, like ``stdio_transport`` which also starts its server); the server side
is a session of the channel kind that stdio and WebSocket serve (``open_channel_session``), so
an in-process server behaves as it would behind a socket: cancellation, server-to-client
requests, notifications, the bound on requests in flight.

Each request is served in its caller's own task, as the HTTP transport reads a response in the
caller's task: no reader task, no hand-offs between tasks, and cancelling the caller cancels the
request. What the server sends while serving it, and its answer, is delivered to the client in
that task too. A request whose progress the caller follows runs in a task of the transport's
instead, while the caller waits for its answer: its progress may come from any task of the
server's, and the caller's callback must run as it comes. Closing the client cancels what is
being served and waits for it to unwind before the server's session closes.

No JSON is written: messages cross as objects. Each is copied on its way (``copy_message``:
what an encode and decode would give), so that neither side sees the other's later mutations of
a dict or list it sent or received; requests keep the bound on one message that the other
transports apply.
"""

from __future__ import annotations

import contextlib
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
    # Runs the requests whose progress the caller follows (see ``send``).
    _nursery: trio.Nursery
    protocol_version: str | None = None
    closed: bool = False
    # Cancellation is always said: a request served in a task of the transport's is cancelled
    # by the notice (one served in its caller's task is cancelled with it; the notice then
    # finds nothing left to cancel).
    closes_stream_to_cancel: bool = False
    sends_headers: bool = False
    # The server's bound on one message: over it, the request fails here, the channel stays.
    max_message_bytes: int = MAX_MESSAGE_BYTES
    # The requests being served now, by task (innermost last: a callback may call again),
    # all cancelled when the transport closes; ``_idle`` is set when there are none.
    _serving: dict[trio.lowlevel.Task, list[_Serving]] = attrs.field(factory=dict)
    _idle: trio.Event = attrs.field(factory=trio.Event)

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
        elif _follows_progress(copied):
            # Its progress may come from any task of the server's (a relayed upstream's
            # reader, a tool's own child task), and the caller's callback runs in the
            # caller's task: the caller waits for the answer while the request runs here.
            self._nursery.start_soon(self._serve_in_task, copied)
        else:
            await self._serve(copied)

    async def _serve_in_task(self, request: Request) -> None:
        # Ended by the transport's closing: its caller learns that from connection_lost.
        with contextlib.suppress(McpConnectionError):
            await self._serve(request)

    async def _serve(self, request: Request) -> None:
        serving = _Serving(request.id)
        task = trio.lowlevel.current_task()
        if not self._serving:
            self._idle = trio.Event()  # set again when nothing is served
        stack = self._serving.setdefault(task, [])
        stack.append(serving)
        try:
            with serving.scope:
                await self._channel.serve_now(request)
        finally:
            stack.pop()
            if not stack:
                del self._serving[task]
                if not self._serving:
                    self._idle.set()
        if serving.failure is not None:
            # As over HTTP, where the caller's error ends its reading and so its request.
            raise serving.failure
        if serving.scope.cancelled_caught:
            raise McpConnectionError(self.target, "the in-process server closed")
        if not serving.answered:
            # Ended without an answer (the session closed under it): say so rather than
            # leave the caller waiting for one.
            refusal = McpError(INTERNAL_ERROR, "the in-process server ended the request unanswered")
            await self._inbox.deliver(refusal.response_for(request.id))

    async def deliver(self, message: Message) -> None:
        """What the server sends: to the client, in the task that sends it."""
        stack = self._serving.get(trio.lowlevel.current_task())
        serving = stack[-1] if stack else None
        if (
            serving is not None
            and isinstance(message, (Response, ErrorResponse))
            and message.id == serving.request_id
        ):
            serving.answered = True
        try:
            await self._inbox.deliver(copy_message(message))
        except Exception as exc:
            if serving is None:
                raise
            # The caller's own code failed (it runs here, in its task): the error is the
            # caller's, not the server's, and the request ends.
            serving.failure = exc
            serving.scope.cancel()

    async def aclose(self) -> None:
        """Cancel what is being served and wait until it has unwound: the session closes
        after its requests, as a channel's loop waits for its request tasks."""
        self.closed = True
        for stack in self._serving.values():
            for serving in stack:
                serving.scope.cancel()
        with trio.CancelScope(shield=True):
            if self._serving:
                await self._idle.wait()


def _follows_progress(request: Request) -> bool:
    meta = (request.params or {}).get("_meta")
    return isinstance(meta, dict) and "progressToken" in meta


def memory_transport(server: McpServer, *, name: str = "in-process") -> TransportFactory:
    """A transport factory for :func:`open_mcp_client` that serves ``server`` in this process."""

    @asynccontextmanager
    async def open_transport(inbox: ClientInbox) -> AsyncIterator[InProcessTransport]:
        transport: InProcessTransport | None = None

        async def deliver(message: Message) -> None:
            assert transport is not None
            await transport.deliver(message)

        async with (
            open_channel_session(server, deliver) as channel,
            trio.open_nursery() as nursery,
        ):
            transport = InProcessTransport(f"memory://{name}", channel, inbox, nursery)
            try:
                yield transport
            finally:
                nursery.cancel_scope.cancel()
                await transport.aclose()
                inbox.connection_lost(
                    McpConnectionError(transport.target, "the connection is closed")
                )

    return open_transport
