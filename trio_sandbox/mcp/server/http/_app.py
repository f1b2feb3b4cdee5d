"""The ASGI app of the HTTP face: one endpoint for both protocol eras and WebSocket.

A POST with no session id is stateless-era when its ``_meta`` or its ``MCP-Protocol-Version``
header says so, and admitted after the header checks of that era; ``initialize`` opens a
handshake-era session (``._sessions``). Answers are written by ``._post``; a GET tails a session's
standalone stream or resumes a POST's (``._sse``); DELETE ends a session. WebSocket upgrades go to
``._websocket``. Served by hypercorn (``._hypercorn``).
"""

from __future__ import annotations

import attrs
import trio

from ...protocol import _versions as versions
from ...protocol._errors import HttpRefusal, McpError, MessageDecodeError
from ...protocol._headers import (
    SESSION_HEADER,
    VERSION_HEADER,
    check_param_headers,
    check_standard_headers,
)
from ...protocol._jsonrpc import decode_message, parse_json
from ...protocol._messages import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    LIMIT_REACHED,
    PARSE_ERROR,
    ErrorResponse,
    Message,
    Notification,
    Request,
    Response,
)
from .._budget import RequestBudget, first_spent, give, take
from .._identity import ClientIdentity, identity_of_scope
from .._server import McpServer
from .._session import ServerSession, stateless_session, unsupported_version_error
from ._asgi import (
    DEFAULT_HTTP_SETTINGS,
    HttpSettings,
    Receive,
    Scope,
    Send,
    accepted_types,
    cancel_on_disconnect,
    cancel_on_event,
    check_host_and_origin,
    headers_of,
    read_body,
    refusal_body,
    send_plain,
)
from ._post import STATELESS_ERROR_STATUS, PostReply, answer_post
from ._sessions import HttpSession, SessionTable
from ._sse import SSE_HEADERS, EventStream, sse_event
from ._websocket import serve_websocket


@attrs.define(eq=False)
class McpHttpApp:
    """The ASGI app that serves an :class:`McpServer` over Streamable HTTP and WebSocket."""

    server: McpServer
    settings: HttpSettings = DEFAULT_HTTP_SETTINGS
    _sessions: SessionTable = attrs.field(init=False)
    _closing: trio.Event = attrs.field(factory=trio.Event)
    _websockets: int = 0
    # Requests running on the whole face (HTTP and WebSocket).
    _requests: RequestBudget = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._sessions = SessionTable(self.server, self.settings)
        self._requests = RequestBudget(self.settings.max_requests_in_flight, "this server")

    def close(self) -> None:
        """End every long-lived stream so that a graceful shutdown can finish."""
        self._closing.set()
        self.server.listeners.close()
        self._sessions.drop_all()

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    @property
    def sessions(self) -> list[ServerSession]:
        """The handshake-era sessions this face holds now."""
        return self._sessions.cores()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._serve_http(scope, receive, send)
        elif kind == "websocket":
            self._websockets += 1
            try:
                full = self._websockets > self.settings.max_websockets
                await serve_websocket(
                    self.server,
                    self.settings,
                    self._closing,
                    scope,
                    receive,
                    send,
                    full=full,
                    face_requests=self._requests,
                    client_identity=identity_of_scope(scope),
                )
            finally:
                self._websockets -= 1
        elif kind == "lifespan":
            await serve_lifespan(receive, send)

    # --- HTTP -------------------------------------------------------------------------------

    async def _serve_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = headers_of(scope)
        # Who the face authenticated (a client certificate, a token); None: it authenticates
        # no one. A session belongs to the identity that opened it.
        identity = identity_of_scope(scope)
        self._sessions.expire_idle()
        try:
            check_host_and_origin(headers, self.settings)
            if scope["path"].rstrip("/") != self.settings.path.rstrip("/"):
                raise HttpRefusal(
                    404, f"no MCP endpoint at {scope['path']}; use {self.settings.path}"
                )
            method = scope["method"]
            if method == "POST":
                await self._post(headers, identity, receive, send)
            elif method == "GET":
                await self._get(headers, identity, receive, send)
            elif method == "DELETE":
                await self._delete(headers, identity, send)
            else:
                raise HttpRefusal(
                    405, f"method {method} not allowed", headers=[(b"allow", b"GET, POST, DELETE")]
                )
        except HttpRefusal as exc:
            await send_plain(send, exc.status, refusal_body(exc), exc.headers)

    async def _post(
        self,
        headers: dict[str, str],
        identity: ClientIdentity | None,
        receive: Receive,
        send: Send,
    ) -> None:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise HttpRefusal(415, "POST bodies must be application/json")
        accepts = accepted_types(headers.get("accept", ""))
        json_ok = "application/json" in accepts or "*/*" in accepts
        sse_ok = "text/event-stream" in accepts or "*/*" in accepts
        if not (json_ok and sse_ok):
            raise HttpRefusal(406, "Accept must list both application/json and text/event-stream")
        body = await read_body(
            headers, receive, self.settings.max_body_bytes, self.settings.body_timeout
        )
        try:
            raw = parse_json(body)
        except McpError as exc:
            raise HttpRefusal(400, exc.message, code=PARSE_ERROR) from None
        batch = isinstance(raw, list)
        raw_items = raw if isinstance(raw, list) else [raw]
        if batch and not raw_items:
            raise HttpRefusal(400, "an empty JSON-RPC batch is invalid")
        messages: list[Message] = []
        for item in raw_items:
            try:
                messages.append(decode_message(item))
            except MessageDecodeError as exc:
                raise HttpRefusal(
                    400, exc.message, code=exc.code, request_id=exc.request_id
                ) from None

        session_id = headers.get(SESSION_HEADER)
        version_header = headers.get(VERSION_HEADER)
        first = messages[0]
        if session_id is None and _is_stateless_post(first, version_header):
            if batch:
                raise HttpRefusal(
                    400, "JSON-RPC batches do not exist in the stateless protocol era"
                )
            await self._post_stateless(first, headers, identity, receive, send, json_ok)
            return
        if session_id is None:
            if not (isinstance(first, Request) and first.method == "initialize"):
                raise HttpRefusal(400, f"missing {SESSION_HEADER} header: send initialize first")
            if batch:
                raise HttpRefusal(400, "initialize cannot be part of a JSON-RPC batch")
            await self._post_initialize(first, identity, receive, send, json_ok)
            return
        session = self._sessions.get(session_id, identity)
        if version_header is not None and version_header not in versions.SUPPORTED_VERSIONS:
            raise HttpRefusal(400, f"unsupported {VERSION_HEADER}: {version_header!r}")
        if batch and not versions.batches_allowed(session.core.protocol_version):
            raise HttpRefusal(
                400, "JSON-RPC batches are allowed only in protocol version 2025-03-26"
            )
        await self._post_messages(session, messages, receive, send, json_ok)

    async def _post_initialize(
        self,
        request: Request,
        identity: ClientIdentity | None,
        receive: Receive,
        send: Send,
        json_ok: bool,
    ) -> None:
        self._admit((), 1)  # before a session is made (or another one ended) for nothing
        session = self._sessions.open(identity)
        assert session.core.session_id is not None
        extra = ((SESSION_HEADER.encode(), session.core.session_id.encode()),)
        reply = PostReply(json_ok, extra_headers=extra)
        await self._answer(session, [request], receive, send, reply)

    def _admit(self, budgets: tuple[RequestBudget, ...], count: int) -> tuple[RequestBudget, ...]:
        """``budgets`` and the face's, when they have room for ``count`` more requests: 429 when
        a session's is spent, 503 when the face's is."""
        budgets = (*budgets, self._requests)
        spent = first_spent(budgets, count)
        if spent is not None:
            raise HttpRefusal(
                503 if spent is self._requests else 429,
                spent.refusal().message,
                code=LIMIT_REACHED,
                headers=[(b"retry-after", b"1")],
            )
        return budgets

    async def _answer(
        self,
        session: HttpSession,
        requests: list[Request],
        receive: Receive,
        send: Send,
        reply: PostReply,
    ) -> None:
        """Answer a session's requests; it is busy meanwhile, and active when they end."""
        budgets = self._admit((session.requests,), len(requests))
        take(budgets, len(requests))
        try:
            await answer_post(session.core, requests, receive, send, self.settings, reply)
        finally:
            give(budgets, len(requests))
            self._sessions.touch(session)

    async def _post_messages(
        self,
        session: HttpSession,
        messages: list[Message],
        receive: Receive,
        send: Send,
        json_ok: bool,
    ) -> None:
        self._sessions.touch(session)
        requests = [m for m in messages if isinstance(m, Request)]
        for message in messages:
            if isinstance(message, Notification):
                session.core.handle_notification(message)
            elif isinstance(message, (Response, ErrorResponse)):
                session.core.handle_response(message)
        if not requests:
            await send_plain(send, 202, b"")
            return
        self._admit((session.requests,), len(requests))  # before a stream is made for them
        stream = session.new_stream()
        reply = PostReply(json_ok, stream=stream, priming=session.priming)
        await self._answer(session, requests, receive, send, reply)

    async def _post_stateless(
        self,
        message: Message,
        headers: dict[str, str],
        identity: ClientIdentity | None,
        receive: Receive,
        send: Send,
        json_ok: bool,
    ) -> None:
        if not isinstance(message, Request):
            # Nothing in the stateless era is addressed to a server without an id.
            await send_plain(send, 202, b"")
            return
        try:
            session = self._stateless_session(message, headers, identity)
        except McpError as exc:
            raise HttpRefusal(
                STATELESS_ERROR_STATUS.get(exc.code, 400),
                exc.message,
                code=exc.code,
                request_id=message.id,
                data=exc.data,
            ) from None
        # Closing the response stream cancels a stateless request: nobody could read its answer.
        reply = PostReply(json_ok, cancel_on_disconnect=True)
        budgets = self._admit((), 1)
        take(budgets, 1)
        try:
            await answer_post(session, [message], receive, send, self.settings, reply)
        finally:
            give(budgets, 1)

    def _stateless_session(
        self, request: Request, headers: dict[str, str], identity: ClientIdentity | None
    ) -> ServerSession:
        """Check a stateless-era request's envelope and headers, in the order the spec gives."""
        version_header = headers.get(VERSION_HEADER)
        if version_header is None:
            raise McpError(HEADER_MISMATCH, f"missing {VERSION_HEADER} header")
        meta = (request.params or {}).get("_meta")
        if not isinstance(meta, dict):
            raise McpError(INVALID_PARAMS, "params._meta is missing")
        for key in (versions.META_PROTOCOL_VERSION, versions.META_CLIENT_CAPABILITIES):
            if key not in meta:
                raise McpError(INVALID_PARAMS, f"params._meta lacks {key!r}")
        meta_version = meta[versions.META_PROTOCOL_VERSION]
        if meta_version != version_header:
            raise McpError(
                HEADER_MISMATCH,
                f"{VERSION_HEADER} header {version_header!r} differs from _meta {meta_version!r}",
            )
        if meta_version not in versions.STATELESS_VERSIONS:
            raise unsupported_version_error(meta_version)
        check_standard_headers(request, headers)
        if request.method == "tools/call":
            tool = self.server.get_tool((request.params or {}).get("name"))
            if tool is not None:
                check_param_headers(request, tool.input_schema, headers)
        return stateless_session(self.server, request.params, identity)

    async def _get(
        self,
        headers: dict[str, str],
        identity: ClientIdentity | None,
        receive: Receive,
        send: Send,
    ) -> None:
        session_id = headers.get(SESSION_HEADER)
        if session_id is None:
            raise HttpRefusal(
                405,
                "GET needs an Mcp-Session-Id (there is no standalone stream in the stateless era)",
                headers=[(b"allow", b"POST")],
            )
        if "text/event-stream" not in accepted_types(headers.get("accept", "")):
            raise HttpRefusal(406, "GET must accept text/event-stream")
        session = self._sessions.get(session_id, identity)
        self._sessions.touch(session)
        last_event_id = headers.get("last-event-id")
        if last_event_id is None:
            # A fresh standalone stream starts with what happens from now on.
            stream, after = session.standalone, session.standalone.last_seq
        else:
            stream_id, _, seq_text = last_event_id.strip().rpartition(":")
            found = session.find_stream(stream_id)
            if found is None or not seq_text.isdigit():
                raise HttpRefusal(404, f"no stream to resume after event {last_event_id!r}")
            stream, after = found, int(seq_text)
        try:
            await self._tail(session, stream, after, receive, send)
        finally:
            self._sessions.touch(session)  # idle from the end of its stream on

    async def _tail(
        self,
        session: HttpSession,
        stream: EventStream,
        after: int,
        receive: Receive,
        send: Send,
    ) -> None:
        """Send the events of ``stream`` after ``after``, then new ones until it finishes.

        The standalone stream finishes with its session; a POST's stream when its last request
        ends. Disconnecting, the server closing, or a newer reader of the stream (a client that
        reconnected before its old connection was seen to end) ends the response early.
        """
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        opening = b": stream open\n\n"
        if session.priming:
            # Tell the client where it stands, so that it can resume even before any event.
            event_id = f"{stream.stream_id}:{after}"
            opening = f"id: {event_id}\nretry: {self.settings.sse_retry_ms}\ndata: \n\n".encode()
        await send({"type": "http.response.body", "body": opening, "more_body": True})
        seq = after
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_on_disconnect, receive, nursery.cancel_scope)
            nursery.start_soon(cancel_on_event, self._closing, nursery.cancel_scope)
            with session.reading(stream, nursery.cancel_scope):
                while True:
                    for event_seq, payload in stream.since(seq):
                        seq = event_seq
                        event = sse_event(payload, f"{stream.stream_id}:{event_seq}")
                        await send({"type": "http.response.body", "body": event, "more_body": True})
                    if stream.finished or session.core.closed:
                        break
                    with trio.move_on_after(self.settings.sse_keepalive_seconds) as idle:
                        await stream.wait_past(seq)
                    if idle.cancelled_caught:
                        keepalive = b": keep-alive\n\n"
                        more = {"type": "http.response.body", "body": keepalive, "more_body": True}
                        await send(more)
            nursery.cancel_scope.cancel()
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _delete(
        self, headers: dict[str, str], identity: ClientIdentity | None, send: Send
    ) -> None:
        session_id = headers.get(SESSION_HEADER)
        if session_id is None:
            raise HttpRefusal(405, "DELETE needs an Mcp-Session-Id", headers=[(b"allow", b"POST")])
        self._sessions.drop(self._sessions.get(session_id, identity))
        await send_plain(send, 204, b"")


def _is_stateless_post(first: Message, version_header: str | None) -> bool:
    """A POST without a session belongs to the stateless era when its envelope or header says so."""
    params = first.params if isinstance(first, (Request, Notification)) else None
    meta = (params or {}).get("_meta")
    if isinstance(meta, dict) and versions.META_PROTOCOL_VERSION in meta:
        return True
    if isinstance(first, Request) and first.method == "initialize":
        return False
    return version_header is not None and version_header not in versions.HANDSHAKE_VERSIONS


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Answer an ASGI lifespan scope (start-up and shut-down have nothing to do): what any app
    served by hypercorn owes it."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
