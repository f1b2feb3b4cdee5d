"""The Streamable HTTP server transport (both eras) and the WebSocket face, as one ASGI app.

Served by hypercorn under Trio with :func:`serve_http`. Each POST runs its requests in the ASGI
call's own task and answers with plain JSON when the first thing a request produces is its
response, and switches to an SSE stream as soon as it produces anything else (progress, logging,
a request to the client). Every SSE event gets an id so that a client that lost the stream can
resume it with ``GET`` + ``Last-Event-ID``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final, NoReturn, TypeAlias
from urllib.parse import urlsplit

import attrs
import hypercorn.config
import hypercorn.trio
import trio

from . import _versions as versions
from ._duplex import serve_duplex
from ._http_headers import check_param_headers, check_standard_headers
from ._jsonrpc import (
    CONNECTION_CLOSED,
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    ErrorResponse,
    McpError,
    Message,
    MessageDecodeError,
    Notification,
    Request,
    Response,
    decode_message,
    dump_message,
    parse_json,
)
from ._mrtr import MISSING_CLIENT_CAPABILITY
from ._server import McpServer, ServerSession, stateless_session, unsupported_version_error

logger = logging.getLogger("trio_sandbox.mcp.http")

Scope: TypeAlias = MutableMapping[str, Any]
AsgiMessage: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[AsgiMessage]]
Send: TypeAlias = Callable[[AsgiMessage], Awaitable[None]]

LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})
SESSION_HEADER: Final = "mcp-session-id"
VERSION_HEADER: Final = "mcp-protocol-version"
WEBSOCKET_SUBPROTOCOL: Final = "mcp"
# Events kept per stream and streams kept per session for resumption after a lost connection.
_MAX_EVENTS_PER_STREAM: Final = 1024
_MAX_STREAMS_PER_SESSION: Final = 64
# The id of a session's standalone (GET) stream; POST streams count up from 1.
_STANDALONE_STREAM: Final = "0"
# HTTP statuses of stateless-era errors that concern the request as a whole, not its handling.
_STATELESS_ERROR_STATUS: Final = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    METHOD_NOT_FOUND: 404,
    HEADER_MISMATCH: 400,
    MISSING_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
}


@attrs.frozen
class HttpSettings:
    """What the HTTP face accepts. The defaults suit a server reached on the loopback interface."""

    path: str = "/mcp"
    # Host names (no port) a request may name in its Host header; "*" allows any (421 otherwise).
    allowed_hosts: frozenset[str] = LOOPBACK_HOSTS
    # Browser origins allowed besides the loopback ones (403 otherwise).
    allowed_origins: frozenset[str] = frozenset()
    max_body_bytes: int = 4 * 1024 * 1024
    sse_keepalive_seconds: float = 15.0
    sse_retry_ms: int = 1000
    session_idle_timeout: float | None = 3600.0
    max_sessions: int = 1000


class HttpError(Exception):
    """Refuse a request with an HTTP status and a JSON-RPC error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: int = INVALID_REQUEST,
        request_id: Any = None,
        data: Any = None,
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = dump_message(ErrorResponse(request_id, McpError(code, message, data).error))
        self.headers = list(headers)


# --- event streams ---------------------------------------------------------------------------


@attrs.define(eq=False)
class _EventStream:
    """One POST's outbound SSE events, kept so that a client can resume after a lost connection."""

    stream_id: str
    events: list[tuple[int, bytes]] = attrs.field(factory=list)
    finished: bool = False
    changed: trio.Event = attrs.field(factory=trio.Event)
    next_seq: int = 1

    def append(self, payload: bytes) -> int:
        seq = self.next_seq
        self.next_seq += 1
        self.events.append((seq, payload))
        del self.events[:-_MAX_EVENTS_PER_STREAM]
        self._wake()
        return seq

    def finish(self) -> None:
        self.finished = True
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def since(self, seq: int) -> list[tuple[int, bytes]]:
        return [event for event in self.events if event[0] > seq]

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1


@attrs.define(eq=False)
class _HttpSession:
    """A handshake-era session and the event streams it can resume."""

    core: ServerSession
    last_active: float
    # Messages not tied to a request; kept while no GET stream is open, so that a client that
    # reconnects with Last-Event-ID misses nothing.
    standalone: _EventStream = attrs.field(factory=lambda: _EventStream(_STANDALONE_STREAM))
    streams: dict[str, _EventStream] = attrs.field(factory=dict)
    standalone_open: bool = False
    next_stream: int = 0

    @property
    def priming(self) -> bool:
        """Empty priming events (id + retry, no data) exist from 2025-11-25 on."""
        return (self.core.protocol_version or "") >= versions.V2025_11_25

    async def send_standalone(self, message: Message) -> None:
        self.standalone.append(dump_message(message))

    def find_stream(self, stream_id: str) -> _EventStream | None:
        if stream_id == _STANDALONE_STREAM:
            return self.standalone
        return self.streams.get(stream_id)

    def new_stream(self) -> _EventStream:
        self.next_stream += 1
        stream = _EventStream(f"{self.next_stream}")
        self.streams[stream.stream_id] = stream
        while len(self.streams) > _MAX_STREAMS_PER_SESSION:
            del self.streams[next(iter(self.streams))]
        return stream


def _sse_event(payload: bytes, event_id: str | None = None, retry_ms: int | None = None) -> bytes:
    out = b""
    if event_id is not None:
        out += b"id: " + event_id.encode() + b"\n"
    if retry_ms is not None:
        out += b"retry: " + str(retry_ms).encode() + b"\n"
    return out + b"event: message\ndata: " + payload + b"\n\n"


_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


@attrs.define(eq=False)
class _PostResponder:
    """Writes one POST's answer: JSON when possible, else an SSE stream that can be resumed."""

    send: Send
    settings: HttpSettings
    extra_headers: list[tuple[bytes, bytes]]
    json_ok: bool
    expected_responses: int
    stream: _EventStream | None
    priming: bool
    nursery: trio.Nursery
    stateless: bool = False
    started: bool = False
    streaming: bool = False
    connected: bool = True
    responses_seen: int = 0
    lock: trio.Lock = attrs.field(factory=trio.Lock)

    async def emit(self, message: Message) -> None:
        async with self.lock:
            is_response = isinstance(message, (Response, ErrorResponse))
            if is_response:
                self.responses_seen += 1
            payload = dump_message(message)
            if not self.started and self.json_ok and is_response and self.expected_responses == 1:
                self.started = True
                status = 200
                if self.stateless and isinstance(message, ErrorResponse):
                    status = _STATELESS_ERROR_STATUS.get(message.error.code, 200)
                await self._write_json(payload, status)
                return
            if not self.started:
                self.started = self.streaming = True
                await self._start_sse()
            event_id = None
            if self.stream is not None:
                seq = self.stream.append(payload)
                event_id = f"{self.stream.stream_id}:{seq}"
            await self._write(_sse_event(payload, event_id), more=True)

    async def close_stream(self) -> bool:
        """End the HTTP response now; later events wait in the stream for a resuming GET."""
        if self.stream is None or not self.priming:
            # Without a priming event id the client could not resume: keep the stream open.
            return False
        async with self.lock:
            if not self.started:
                self.started = self.streaming = True
                await self._start_sse()
            await self._write(b"", more=False)
            self.connected = False
        return True

    async def _start_sse(self) -> None:
        await self._safe_send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": _SSE_HEADERS + self.extra_headers,
            }
        )
        if self.priming and self.stream is not None:
            # Priming event: an id to resume from before anything happens, and the retry delay.
            prime = (
                f"id: {self.stream.stream_id}:0\nretry: {self.settings.sse_retry_ms}\ndata: \n\n"
            )
            await self._write(prime.encode(), more=True)
        self.nursery.start_soon(self._keepalive)

    async def _keepalive(self) -> None:
        while self.connected:
            await trio.sleep(self.settings.sse_keepalive_seconds)
            async with self.lock:
                await self._write(b": keep-alive\n\n", more=True)

    async def _write_json(self, payload: bytes, status: int) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            *self.extra_headers,
        ]
        await self._safe_send({"type": "http.response.start", "status": status, "headers": headers})
        await self._write(payload, more=False)

    async def _write(self, body: bytes, *, more: bool) -> None:
        await self._safe_send({"type": "http.response.body", "body": body, "more_body": more})

    async def _safe_send(self, message: AsgiMessage) -> None:
        if not self.connected:
            return
        try:
            await self.send(message)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            self.connected = False

    async def finish(self) -> None:
        async with self.lock:
            if self.stream is not None:
                self.stream.finish()
            if not self.started:
                # Every request was cancelled: there is nothing to say.
                self.started = True
                await self._safe_send(
                    {"type": "http.response.start", "status": 202, "headers": self.extra_headers}
                )
                await self._write(b"", more=False)
            elif self.streaming:
                await self._write(b"", more=False)
            self.connected = False


# --- the app -------------------------------------------------------------------------------


@attrs.define(eq=False)
class McpHttpApp:
    """The ASGI app that serves an :class:`McpServer` over Streamable HTTP and WebSocket."""

    server: McpServer
    settings: HttpSettings = HttpSettings()
    _sessions: dict[str, _HttpSession] = attrs.field(factory=dict)
    _closing: trio.Event = attrs.field(factory=trio.Event)

    def close(self) -> None:
        """End every long-lived stream so that a graceful shutdown can finish."""
        self._closing.set()
        self.server.listeners.close()
        for session in list(self._sessions.values()):
            self._drop_session(session)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._serve_http(scope, receive, send)
        elif kind == "websocket":
            await self._serve_websocket(scope, receive, send)
        elif kind == "lifespan":
            await _serve_lifespan(receive, send)

    # --- HTTP -------------------------------------------------------------------------------

    async def _serve_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        try:
            self._check_host_and_origin(headers)
            if scope["path"].rstrip("/") != self.settings.path.rstrip("/"):
                raise HttpError(
                    404, f"no MCP endpoint at {scope['path']}; use {self.settings.path}"
                )
            method = scope["method"]
            if method == "POST":
                await self._post(headers, receive, send)
            elif method == "GET":
                await self._get(headers, receive, send)
            elif method == "DELETE":
                await self._delete(headers, send)
            else:
                raise HttpError(
                    405, f"method {method} not allowed", headers=[(b"allow", b"GET, POST, DELETE")]
                )
        except HttpError as exc:
            await _send_plain(send, exc.status, exc.body, exc.headers)

    def _check_host_and_origin(self, headers: dict[str, str]) -> None:
        host = _hostname(headers.get("host", ""))
        allowed = self.settings.allowed_hosts
        if "*" not in allowed and host not in allowed:
            raise HttpError(421, f"host {host!r} is not served here (DNS rebinding protection)")
        origin = headers.get("origin")
        if (
            origin is not None
            and origin not in self.settings.allowed_origins
            and _hostname(urlsplit(origin).netloc) not in LOOPBACK_HOSTS
        ):
            raise HttpError(403, f"origin {origin!r} is not allowed")

    async def _post(self, headers: dict[str, str], receive: Receive, send: Send) -> None:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise HttpError(415, "POST bodies must be application/json")
        accepts = _accepted(headers.get("accept", ""))
        json_ok = "application/json" in accepts or "*/*" in accepts
        sse_ok = "text/event-stream" in accepts or "*/*" in accepts
        if not (json_ok and sse_ok):
            raise HttpError(406, "Accept must list both application/json and text/event-stream")
        body = await _read_body(headers, receive, self.settings.max_body_bytes)
        try:
            raw = parse_json(body)
        except McpError as exc:
            raise HttpError(400, exc.message, code=PARSE_ERROR) from None
        batch = isinstance(raw, list)
        raw_items = raw if isinstance(raw, list) else [raw]
        if batch and not raw_items:
            raise HttpError(400, "an empty JSON-RPC batch is invalid")
        messages: list[Message] = []
        for item in raw_items:
            try:
                messages.append(decode_message(item))
            except MessageDecodeError as exc:
                raise HttpError(
                    400, exc.message, code=exc.code, request_id=exc.request_id
                ) from None

        session_id = headers.get(SESSION_HEADER)
        version_header = headers.get(VERSION_HEADER)
        first = messages[0]
        if session_id is None and _is_stateless_post(first, version_header):
            if batch:
                raise HttpError(400, "JSON-RPC batches do not exist in the stateless protocol era")
            await self._post_stateless(first, headers, receive, send, json_ok)
            return
        if session_id is None:
            if not (isinstance(first, Request) and first.method == "initialize"):
                raise HttpError(400, f"missing {SESSION_HEADER} header: send initialize first")
            if batch:
                raise HttpError(400, "initialize cannot be part of a JSON-RPC batch")
            await self._post_initialize(first, receive, send, json_ok)
            return
        session = self._session(session_id)
        if version_header is not None and version_header not in versions.SUPPORTED_VERSIONS:
            raise HttpError(400, f"unsupported {VERSION_HEADER}: {version_header!r}")
        if batch and not versions.batches_allowed(session.core.protocol_version):
            raise HttpError(400, "JSON-RPC batches are allowed only in protocol version 2025-03-26")
        await self._post_messages(session, messages, receive, send, json_ok)

    async def _post_initialize(
        self, request: Request, receive: Receive, send: Send, json_ok: bool
    ) -> None:
        self._expire_idle_sessions()
        if len(self._sessions) >= self.settings.max_sessions:
            raise HttpError(503, "too many sessions", code=CONNECTION_CLOSED)
        core = self.server.open_session(session_id=ServerSession.new_id())
        assert core.session_id is not None
        session = _HttpSession(core, trio.current_time())
        core.set_standalone(session.send_standalone)
        self._sessions[core.session_id] = session
        extra = [(SESSION_HEADER.encode(), core.session_id.encode())]
        await self._answer(session.core, [request], receive, send, json_ok, extra, None, False)

    async def _post_messages(
        self,
        session: _HttpSession,
        messages: list[Message],
        receive: Receive,
        send: Send,
        json_ok: bool,
    ) -> None:
        session.last_active = trio.current_time()
        requests = [m for m in messages if isinstance(m, Request)]
        for message in messages:
            if isinstance(message, Notification):
                session.core.handle_notification(message)
            elif isinstance(message, (Response, ErrorResponse)):
                session.core.handle_response(message)
        if not requests:
            await _send_plain(send, 202, b"")
            return
        stream = session.new_stream()
        await self._answer(
            session.core, requests, receive, send, json_ok, [], stream, session.priming
        )

    async def _post_stateless(
        self, message: Message, headers: dict[str, str], receive: Receive, send: Send, json_ok: bool
    ) -> None:
        if not isinstance(message, Request):
            # Nothing in the stateless era is addressed to a server without an id.
            await _send_plain(send, 202, b"")
            return
        try:
            session = self._stateless_session(message, headers)
        except McpError as exc:
            raise HttpError(
                _STATELESS_ERROR_STATUS.get(exc.code, 400),
                exc.message,
                code=exc.code,
                request_id=message.id,
                data=exc.data,
            ) from None
        # Closing the response stream cancels a stateless request: nobody could read its answer.
        await self._answer(session, [message], receive, send, json_ok, [], None, False, True)

    def _stateless_session(self, request: Request, headers: dict[str, str]) -> ServerSession:
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
        return stateless_session(self.server, request.params)

    async def _answer(
        self,
        session: ServerSession,
        requests: list[Request],
        receive: Receive,
        send: Send,
        json_ok: bool,
        extra_headers: list[tuple[bytes, bytes]],
        stream: _EventStream | None,
        priming: bool,
        cancel_on_disconnect: bool = False,
    ) -> None:
        async with trio.open_nursery() as nursery:
            responder = _PostResponder(
                send,
                self.settings,
                extra_headers,
                json_ok,
                len(requests),
                stream,
                priming,
                nursery,
                stateless=session.stateless,
            )
            close_stream = responder.close_stream if stream is not None else None

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                responder.connected = False
                if cancel_on_disconnect:
                    work.cancel()

            nursery.start_soon(watch_disconnect)
            with trio.CancelScope() as work:
                if len(requests) == 1:
                    await session.handle_request(
                        requests[0], responder.emit, close_stream=close_stream
                    )
                else:
                    async with trio.open_nursery() as batch:
                        for request in requests:
                            batch.start_soon(
                                functools.partial(
                                    session.handle_request,
                                    request,
                                    responder.emit,
                                    close_stream=close_stream,
                                )
                            )
            await responder.finish()
            nursery.cancel_scope.cancel()

    async def _get(self, headers: dict[str, str], receive: Receive, send: Send) -> None:
        session_id = headers.get(SESSION_HEADER)
        if session_id is None:
            raise HttpError(
                405,
                "GET needs an Mcp-Session-Id (there is no standalone stream in the stateless era)",
                headers=[(b"allow", b"POST")],
            )
        if "text/event-stream" not in _accepted(headers.get("accept", "")):
            raise HttpError(406, "GET must accept text/event-stream")
        session = self._session(session_id)
        session.last_active = trio.current_time()
        last_event_id = headers.get("last-event-id")
        if last_event_id is None:
            # A fresh standalone stream starts with what happens from now on.
            stream, after = session.standalone, session.standalone.last_seq
        else:
            stream_id, _, seq_text = last_event_id.strip().rpartition(":")
            found = session.find_stream(stream_id)
            if found is None or not seq_text.isdigit():
                raise HttpError(404, f"no stream to resume after event {last_event_id!r}")
            stream, after = found, int(seq_text)
        if stream is session.standalone:
            if session.standalone_open:
                raise HttpError(409, "this session already has a standalone SSE stream")
            session.standalone_open = True
        try:
            await self._tail(session, stream, after, receive, send)
        finally:
            if stream is session.standalone:
                session.standalone_open = False

    async def _tail(
        self,
        session: _HttpSession,
        stream: _EventStream,
        after: int,
        receive: Receive,
        send: Send,
    ) -> None:
        """Send the events of ``stream`` after ``after``, then new ones until it finishes.

        The standalone stream finishes with its session; a POST's stream when its last request
        ends. Disconnecting, or the server closing, ends the response early.
        """
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        opening = b": stream open\n\n"
        if session.priming:
            # Tell the client where it stands, so that it can resume even before any event.
            event_id = f"{stream.stream_id}:{after}"
            opening = f"id: {event_id}\nretry: {self.settings.sse_retry_ms}\ndata: \n\n".encode()
        await send({"type": "http.response.body", "body": opening, "more_body": True})
        seq = after
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
            nursery.start_soon(_cancel_on_event, self._closing, nursery.cancel_scope)
            while True:
                for event_seq, payload in stream.since(seq):
                    seq = event_seq
                    event = _sse_event(payload, f"{stream.stream_id}:{event_seq}")
                    await send({"type": "http.response.body", "body": event, "more_body": True})
                if stream.finished or session.core.closed:
                    break
                with trio.move_on_after(self.settings.sse_keepalive_seconds) as idle:
                    await stream.changed.wait()
                if idle.cancelled_caught:
                    keepalive = b": keep-alive\n\n"
                    await send({"type": "http.response.body", "body": keepalive, "more_body": True})
            nursery.cancel_scope.cancel()
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _delete(self, headers: dict[str, str], send: Send) -> None:
        session_id = headers.get(SESSION_HEADER)
        if session_id is None:
            raise HttpError(405, "DELETE needs an Mcp-Session-Id", headers=[(b"allow", b"POST")])
        self._drop_session(self._session(session_id))
        await _send_plain(send, 204, b"")

    # --- sessions ---------------------------------------------------------------------------

    def _session(self, session_id: str) -> _HttpSession:
        session = self._sessions.get(session_id)
        if session is None:
            raise HttpError(404, "session not found: it ended or never existed; initialize again")
        return session

    def _drop_session(self, session: _HttpSession) -> None:
        if session.core.session_id is not None:
            self._sessions.pop(session.core.session_id, None)
        self.server.close_session(session.core)
        session.standalone.finish()
        for stream in session.streams.values():
            stream.finish()

    def _expire_idle_sessions(self) -> None:
        timeout = self.settings.session_idle_timeout
        if timeout is None:
            return
        now = trio.current_time()
        for session in list(self._sessions.values()):
            busy = session.core.in_flight or session.standalone_open
            if not busy and now - session.last_active > timeout:
                self._drop_session(session)

    # --- WebSocket --------------------------------------------------------------------------

    async def _serve_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return
        try:
            self._check_host_and_origin(headers)
        except HttpError:
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["path"].rstrip("/") != self.settings.path.rstrip("/") or (
            WEBSOCKET_SUBPROTOCOL not in scope.get("subprotocols", [])
        ):
            await send({"type": "websocket.close", "code": 1002})
            return
        await send({"type": "websocket.accept", "subprotocol": WEBSOCKET_SUBPROTOCOL})

        async def frames() -> AsyncIterator[bytes | str]:
            while True:
                event = await receive()
                if event["type"] != "websocket.receive":
                    return
                data = event.get("text") if event.get("text") is not None else event.get("bytes")
                if data is not None and len(data) > self.settings.max_body_bytes:
                    error = McpError(INVALID_REQUEST, "message too large")
                    await send_text(dump_message(error.response_for(None)))
                    continue
                if data is not None:
                    yield data

        async def send_text(data: bytes) -> None:
            await send({"type": "websocket.send", "text": data.decode()})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_event, self._closing, nursery.cancel_scope)
            await serve_duplex(self.server, frames(), send_text)
            nursery.cancel_scope.cancel()
        # The peer may be gone already.
        with trio.CancelScope(shield=True), trio.move_on_after(1), contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1000})


def _is_stateless_post(first: Message, version_header: str | None) -> bool:
    """A POST without a session belongs to the stateless era when its envelope or header says so."""
    params = first.params if isinstance(first, (Request, Notification)) else None
    meta = (params or {}).get("_meta")
    if isinstance(meta, dict) and versions.META_PROTOCOL_VERSION in meta:
        return True
    if isinstance(first, Request) and first.method == "initialize":
        return False
    return version_header is not None and version_header not in versions.HANDSHAKE_VERSIONS


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _cancel_on_event(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _serve_lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _headers(scope: Scope) -> dict[str, str]:
    # Header names are lower-case in ASGI; a repeated header keeps its last value.
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def _hostname(netloc: str) -> str:
    if netloc.startswith("["):
        return netloc[1:].partition("]")[0]
    if netloc.count(":") > 1:  # a bare IPv6 address
        return netloc
    return netloc.partition(":")[0].lower()


def _accepted(accept: str) -> set[str]:
    return {part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()}


async def _read_body(headers: dict[str, str], receive: Receive, limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(400, "the client disconnected while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_plain(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    all_headers = [*headers, (b"content-length", str(len(body)).encode())]
    if body:
        all_headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


# --- serving ---------------------------------------------------------------------------------


class _HypercornConfig(hypercorn.config.Config):
    """A hypercorn Config serving an in-memory SSLContext (hypercorn itself wants file paths)."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__()
        self._ssl_context = ssl_context
        # hypercorn waits 60 s for a silent peer's handshake; it need not hold a slot that long.
        self.ssl_handshake_timeout = 10.0

    @property
    def ssl_enabled(self) -> bool:
        return self._ssl_context is not None

    def create_ssl_context(self) -> ssl.SSLContext | None:
        return self._ssl_context


@attrs.frozen
class BoundServer:
    """What :func:`serve_http` reports once it listens."""

    url: str  # the MCP endpoint, e.g. https://127.0.0.1:43211/mcp
    host: str
    port: int


async def serve_http(
    app: McpHttpApp | Callable[[Scope, Receive, Send], Awaitable[None]],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    path: str | None = None,
    graceful_timeout: float = 5.0,
    task_status: trio.TaskStatus[BoundServer] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``app`` with hypercorn until cancelled, then shut down gracefully within a deadline."""
    config = _HypercornConfig(ssl_context)
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.graceful_timeout = graceful_timeout
    config.keep_alive_max_requests = 2**31  # hypercorn closes busy keep-alive connections at 1000
    config.accesslog = None
    config.errorlog = logging.getLogger("trio_sandbox.mcp.hypercorn")
    config.websocket_max_message_size = (
        app.settings.max_body_bytes if isinstance(app, McpHttpApp) else 4 * 1024 * 1024
    )
    if ssl_context is not None:
        config.alpn_protocols = ["http/1.1"]
    endpoint = path or (app.settings.path if isinstance(app, McpHttpApp) else "/")
    shutdown = trio.Event()
    # Shielded only once it serves, so that a graceful shutdown can run; cancelling a start
    # (hypercorn binding its sockets) simply stops it.
    server_scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[list[str]]) -> None:
        with server_scope:
            await hypercorn.trio.serve(
                app,  # type: ignore[arg-type]
                config,
                shutdown_trigger=shutdown.wait,
                task_status=task_status,
            )

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(run)
        server_scope.shield = True
        base = binds[0]
        netloc = base.split("://", 1)[1]
        bound_port = int(netloc.rsplit(":", 1)[1])
        try:
            task_status.started(BoundServer(f"{base}{endpoint}", host, bound_port))
            await trio.sleep_forever()
        finally:
            # End SSE streams first (hypercorn waits for open responses), then stop within a bound.
            if isinstance(app, McpHttpApp):
                app.close()
            shutdown.set()
            server_scope.deadline = trio.current_time() + graceful_timeout
