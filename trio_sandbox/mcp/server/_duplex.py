"""Serving one MCP session over a message channel: stdio lines and WebSocket frames (JSON texts),
or message objects in one process (the memory transport).

These channels carry whole JSON-RPC messages in both directions with no HTTP around them, so the
session loop is shared: read a message, run requests concurrently in a nursery, answer each on the
same channel, and cancel everything still running when the channel closes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final, TypeVar

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

    # Messages not tied to a request (list changes, resource updates) are queued, never awaited:
    # a peer that stops reading must not stall whoever broadcasts to every session.
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
    # Stateless-era requests run in throwaway sessions; the channel still cancels them by id.
    stateless_scopes: dict[RequestId, trio.CancelScope] = {}
    try:
        with session_scope, single_error():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain_standalone)
                async for payload in incoming:
                    for item in decode(payload, session):
                        if isinstance(item, McpError):
                            await send(item.response_for(getattr(item, "request_id", None)))
                        elif isinstance(item, Request) and (spent := first_spent(budgets, 1)):
                            # Answered here, before the next message is read: a peer that
                            # floods requests without reading waits on its own answers.
                            await send(spent.refusal().response_for(item.id))
                        else:
                            _dispatch(
                                nursery, server, session, stateless_scopes, item, send, budgets
                            )
                # The peer hung up: nobody is left to read answers.
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


def _dispatch(
    nursery: trio.Nursery,
    server: McpServer,
    session: ServerSession,
    stateless_scopes: dict[RequestId, trio.CancelScope],
    message: Message,
    send: Callable[[Message], Awaitable[None]],
    budgets: Sequence[RequestBudget],
) -> None:
    if isinstance(message, Request):
        take(budgets, 1)  # now, so that the next message read counts this request

        async def serve_counted() -> None:
            try:
                await _serve_request(server, session, stateless_scopes, message, send)
            finally:
                give(budgets, 1)

        nursery.start_soon(serve_counted)
    elif isinstance(message, Notification):
        session.handle_notification(message)
        request_id = (message.params or {}).get("requestId")
        # Any JSON may come as requestId (a list is unhashable): only ids can name a request.
        if (
            message.method == "notifications/cancelled"
            and isinstance(request_id, (str, int))
            and request_id in stateless_scopes
        ):
            stateless_scopes[request_id].cancel()
    elif isinstance(message, (Response, ErrorResponse)):
        session.handle_response(message)


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
