"""Serving one MCP session over a message channel: stdio lines and WebSocket frames (JSON texts),
or message objects in one process.

These channels carry whole JSON-RPC messages in both directions with no HTTP around them, so the
session is shared (:func:`open_channel_session`): the loop that reads a channel runs its requests
concurrently in a nursery, answers each on the same channel, and cancels everything still running
when the channel closes; the in-process transport hands it each message in the sender's task.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Final, TypeVar

import attrs
import trio

from ...concurrency import single_error
from ..protocol._errors import McpError, MessageDecodeError
from ..protocol._jsonrpc import decode_message, dump_message, parse_json
from ..protocol._messages import (
    INVALID_REQUEST,
    ErrorResponse,
    Message,
    Notification,
    Request,
    RequestId,
    Response,
)
from ..protocol._versions import META_PROTOCOL_VERSION, batches_allowed
from ._budget import RequestBudget, first_spent, give, take
from ._identity import ClientIdentity
from ._server import McpServer
from ._session import ServerSession, stateless_session

logger = logging.getLogger("trio_sandbox.mcp.duplex")

# What one payload of a channel is: JSON text, or a message object in one process.
P = TypeVar("P")

# Unsolicited messages queued for a peer before further ones are dropped.
STANDALONE_BACKLOG: Final = 256


async def serve_duplex(
    server: McpServer,
    incoming: AsyncIterator[bytes | str],
    send_bytes: Callable[[bytes], Awaitable[None]],
    *,
    budgets: Sequence[RequestBudget] = (),
    client_identity: ClientIdentity | None = None,
    session_id: str | None = None,
) -> None:
    """Serve MCP on a channel of JSON texts (stdio lines, WebSocket frames) until ``incoming``
    ends; returns after every request of the session has ended. A request that one of
    ``budgets`` has no room for is refused at once. ``client_identity``: who the channel's
    transport authenticated (a WebSocket's client certificate or token), for every request;
    ``session_id``: the channel's session id, for a channel that is one client's session among
    others (a WebSocket connection; stdio has no other)."""

    async def send(message: Message) -> None:
        await send_bytes(dump_message(message))

    await _serve_channel(
        server, incoming, send, _decode_payload, budgets, client_identity, session_id
    )


async def serve_messages(
    server: McpServer,
    incoming: AsyncIterator[Message],
    send_message: Callable[[Message], Awaitable[None]],
    *,
    budgets: Sequence[RequestBudget] = (),
) -> None:
    """Serve MCP on a channel of message objects (in one process: no JSON on the way) until
    ``incoming`` ends. The channel must not share mutable values between its two ends (the
    memory transport copies each message it carries)."""
    await _serve_channel(server, incoming, send_message, _one_message, budgets)


def _one_message(message: Message, session: ServerSession) -> Sequence[Message | McpError]:
    return (message,)


async def _serve_channel(
    server: McpServer,
    incoming: AsyncIterator[P],
    send_message: Callable[[Message], Awaitable[None]],
    decode: Callable[[P, ServerSession], Sequence[Message | McpError]],
    budgets: Sequence[RequestBudget],
    client_identity: ClientIdentity | None = None,
    session_id: str | None = None,
) -> None:
    send_lock = trio.Lock()
    # Cancelled when the peer is gone: nobody is left to read answers.
    session_scope = trio.CancelScope()

    async def send(message: Message) -> None:
        async with send_lock:
            try:
                await send_message(message)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                logger.debug("the peer is gone (%s): ending the session", exc)
                session_scope.cancel()

    with session_scope, single_error():
        async with (
            open_channel_session(
                server,
                send,
                budgets=budgets,
                client_identity=client_identity,
                session_id=session_id,
            ) as channel,
            trio.open_nursery() as nursery,
        ):
            async for payload in incoming:
                for item in decode(payload, channel.session):
                    if isinstance(item, McpError):
                        await send(item.response_for(getattr(item, "request_id", None)))
                    elif isinstance(item, Request):
                        if (refusal := channel.refusal(item)) is not None:
                            # Answered here, before the next message is read: a peer that
                            # floods requests without reading waits on its own answers.
                            await send(refusal)
                        else:
                            channel.count_in()  # now: the next message read counts it
                            nursery.start_soon(channel.serve_counted, item)
                    else:
                        channel.take_message(item)
            # The peer hung up: nobody is left to read answers.
            nursery.cancel_scope.cancel()


@attrs.define(eq=False)
class ChannelSession:
    """One client's session on a message channel: what the channel's reader does with each
    message it takes. The reader of a stdio or WebSocket channel runs each request in a task of
    its own; the in-process transport runs it in the client's own task (``serve_now``)."""

    server: McpServer
    session: ServerSession
    _send: Callable[[Message], Awaitable[None]]
    _budgets: Sequence[RequestBudget]
    # Stateless-era requests run in throwaway sessions; the channel still cancels them by id.
    _stateless_scopes: dict[RequestId, trio.CancelScope] = attrs.field(factory=dict)

    def refusal(self, request: Request) -> ErrorResponse | None:
        """The answer to ``request`` when a budget has no room for it, else None."""
        spent = first_spent(self._budgets, 1)
        return spent.refusal().response_for(request.id) if spent is not None else None

    def count_in(self) -> None:
        """Count one more request in flight against the budgets."""
        take(self._budgets, 1)

    async def serve_counted(self, request: Request) -> None:
        """Serve a request counted in with :meth:`count_in`, and count it out."""
        try:
            await _serve_request(
                self.server, self.session, self._stateless_scopes, request, self._send
            )
        finally:
            give(self._budgets, 1)

    async def serve_now(self, request: Request) -> None:
        """Serve ``request`` in this task, or refuse it when a budget has no room."""
        if (refusal := self.refusal(request)) is not None:
            await self._send(refusal)
            return
        self.count_in()
        await self.serve_counted(request)

    def take_message(self, message: Notification | Response | ErrorResponse) -> None:
        """A notification or an answer from the client."""
        if isinstance(message, Notification):
            self.session.handle_notification(message)
            request_id = (message.params or {}).get("requestId")
            # Any JSON may come as requestId (a list is unhashable): only ids can name a request.
            if (
                message.method == "notifications/cancelled"
                and isinstance(request_id, (str, int))
                and request_id in self._stateless_scopes
            ):
                self._stateless_scopes[request_id].cancel()
        else:
            self.session.handle_response(message)


@asynccontextmanager
async def open_channel_session(
    server: McpServer,
    send: Callable[[Message], Awaitable[None]],
    *,
    budgets: Sequence[RequestBudget] = (),
    client_identity: ClientIdentity | None = None,
    session_id: str | None = None,
) -> AsyncIterator[ChannelSession]:
    """A session of ``server`` whose messages to the client go through ``send``, open until the
    block ends. Messages not tied to a request (list changes, resource updates) are queued and
    sent by a task of the block's, never awaited by whoever broadcasts them: a peer that stops
    reading must not stall whoever broadcasts to every session."""
    outbox, pending_standalone = trio.open_memory_channel[Message](STANDALONE_BACKLOG)

    async def send_standalone(message: Message) -> None:
        try:
            outbox.send_nowait(message)
        except trio.WouldBlock:
            logger.warning("dropping an unsolicited %s: the peer is not reading", _method(message))

    async def drain_standalone() -> None:
        async for message in pending_standalone:
            await send(message)

    session = server.open_session(session_id=session_id, send_standalone=send_standalone)
    session.client_identity = client_identity
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain_standalone)
            yield ChannelSession(server, session, send, budgets)
            nursery.cancel_scope.cancel()
    finally:
        server.close_session(session)


def _method(message: Message) -> str:
    return message.method if isinstance(message, (Request, Notification)) else "message"


def _decode_payload(payload: bytes | str, session: ServerSession) -> list[Message | McpError]:
    try:
        raw = parse_json(payload)
    except McpError as exc:
        return [exc]
    if isinstance(raw, list):
        if not batches_allowed(session.protocol_version) or not raw:
            return [
                McpError(
                    INVALID_REQUEST, "JSON-RPC batches are not allowed in this protocol version"
                )
            ]
        items = raw
    else:
        items = [raw]
    decoded: list[Message | McpError] = []
    for item in items:
        try:
            decoded.append(decode_message(item))
        except MessageDecodeError as exc:
            decoded.append(exc)
    return decoded


async def _serve_request(
    server: McpServer,
    session: ServerSession,
    stateless_scopes: dict[RequestId, trio.CancelScope],
    request: Request,
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if request.method == "server/discover" or (
        session.protocol_version is None
        and request.method != "initialize"
        and _has_envelope(request)
    ):
        # A stateless-era request on a duplex channel: it carries its own envelope.
        try:
            request_session = stateless_session(server, request.params, session.client_identity)
        except McpError as exc:
            await send(exc.response_for(request.id))
            return
        if request.id in stateless_scopes:
            await send(McpError(INVALID_REQUEST, "duplicate request id").response_for(request.id))
            return
        with trio.CancelScope() as scope:
            stateless_scopes[request.id] = scope
            try:
                await request_session.handle_request(request, send)
            finally:
                del stateless_scopes[request.id]
        return
    await session.handle_request(request, send)


def _has_envelope(request: Request) -> bool:
    meta = (request.params or {}).get("_meta")
    return isinstance(meta, dict) and META_PROTOCOL_VERSION in meta
