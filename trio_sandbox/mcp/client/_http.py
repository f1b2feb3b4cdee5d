"""The Streamable HTTP client transport, on our small h11 client (``_http11``) under Trio.

Each request is one POST whose answer (JSON or an SSE stream) is read in the caller's task, so a
cancelled caller closes its stream. A stream that breaks before the response is resumed with
``GET`` + ``Last-Event-ID`` after the server's ``retry:`` delay. In the handshake era the
transport keeps the ``Mcp-Session-Id``, opens the standalone GET stream when the server offers
one, and ends the session with DELETE.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Final
from urllib.parse import quote, quote_plus

import attrs
import trio

from ..protocol._errors import (
    HttpClientError,
    McpConnectionError,
    McpHttpStatusError,
    McpSessionExpired,
    MessageDecodeError,
)
from ..protocol._headers import SESSION_HEADER, VERSION_HEADER
from ..protocol._jsonrpc import MAX_MESSAGE_BYTES, decode_message, dump_bounded
from ..protocol._messages import ErrorResponse, Message, Request, RequestId, Response
from ._auth import MAX_AUTH_RETRIES, AuthChallenge, HttpAuth
from ._http11 import HttpPool, HttpResponse, LineReader
from ._transport import ClientInbox, TransportFactory

logger = logging.getLogger("trio_sandbox.mcp.http_client")
# What one message from a server may be, by default (a docs server's large page, a tool's
# large result): a bound on memory, not on what servers usually send.
MAX_RECEIVED_BYTES: Final = 64 * 1024 * 1024

_MAX_RESUMES: Final = 8
_DEFAULT_RETRY_MS: Final = 1000
_ACCEPT_BOTH: Final = b"application/json, text/event-stream"
_ACCEPT_SSE: Final = b"text/event-stream"
# What is read of a 401/403 body before the hook is asked: its start is the error's snippet.
_CHALLENGE_BODY_BYTES: Final = 65536


@attrs.define
class _SseState:
    last_event_id: str | None = None
    retry_ms: int = _DEFAULT_RETRY_MS


@attrs.define(eq=False)
class HttpTransport:
    target: str
    _pool: HttpPool
    _inbox: ClientInbox
    _nursery: trio.Nursery
    _base_headers: list[tuple[bytes, bytes]]
    protocol_version: str | None = None
    session_id: str | None = None
    closes_stream_to_cancel: bool = True
    sends_headers: bool = True
    # The server's bound on one message: over it, the request fails here, the connection stays.
    max_message_bytes: int = MAX_MESSAGE_BYTES
    # Ours on one message from the server (a body, an SSE event): over it, the request fails.
    max_received_bytes: int = MAX_RECEIVED_BYTES
    _standalone_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    _auth: HttpAuth | None = None
    # The last few Authorization values sent: an error's snippet of the body never shows one
    # (a server that echoes the request would otherwise put the token in an error message).
    _sent_credentials: list[bytes] = attrs.field(factory=list)
    _last_authorization: str | None = None  # the value the last request carried

    def set_protocol_version(self, version: str | None) -> None:
        self.protocol_version = version

    def _headers(self, extra: Mapping[str, str], accept: bytes) -> list[tuple[bytes, bytes]]:
        headers = [*self._base_headers, (b"Accept", accept)]
        headers.extend((name.encode(), value.encode()) for name, value in extra.items())
        if self.protocol_version is not None:
            headers.append((VERSION_HEADER.encode(), self.protocol_version.encode()))
        if self.session_id is not None:
            headers.append((SESSION_HEADER.encode(), self.session_id.encode()))
        return headers

    def _fail(self, reason: str) -> McpConnectionError:
        return McpConnectionError(self.target, reason)

    def _status_error(self, status: int, body: bytes) -> McpHttpStatusError:
        # An echo may be JSON-escaped or URL-encoded; longest spelling first.
        spellings = {
            spelling for credential in self._sent_credentials for spelling in _spellings(credential)
        }
        for spelling in sorted(spellings, key=len, reverse=True):
            body = body.replace(spelling, b"[redacted]")
        return McpHttpStatusError(self.target, status, body)

    def _remember_credential(self, value: str) -> None:
        credential = value.encode()
        token = credential.partition(b" ")[2] or credential
        if token not in self._sent_credentials:
            self._sent_credentials.append(token)
            del self._sent_credentials[:-4]

    @asynccontextmanager
    async def _request(
        self,
        method: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes = b"",
        *,
        ask_hook: bool = True,
    ) -> AsyncIterator[HttpResponse]:
        """One request through the pool, with the auth hook's header; a 401/403 asks the hook,
        which may have the request sent again (bounded). The pool never follows a redirect, so
        the header goes to this server only. ``ask_hook`` False: the header the last request
        carried, and a 401/403 stands (no refresh or login for it)."""
        headers = list(headers)
        for attempt in range(MAX_AUTH_RETRIES + 1):
            sent = headers
            if self._auth is not None:
                value = await self._auth.authorization() if ask_hook else self._last_authorization
                self._last_authorization = value
                if value is not None:
                    self._remember_credential(value)
                    sent = [*headers, (b"Authorization", value.encode())]
            async with self._pool.request(method, sent, body) as response:
                if self._auth is None or response.status not in (401, 403):
                    yield response
                    return
                challenge = AuthChallenge(response.status, response.headers.get("www-authenticate"))
                data = await _read_at_most(response, _CHALLENGE_BODY_BYTES)
            if (
                not ask_hook
                or attempt == MAX_AUTH_RETRIES
                or not await self._auth.challenged(challenge)
            ):
                raise self._status_error(challenge.status, data)
        raise AssertionError("unreachable")  # the loop either yields or raises

    async def send(self, message: Message, headers: Mapping[str, str]) -> None:
        all_headers = self._headers(headers, _ACCEPT_BOTH)
        all_headers.append((b"Content-Type", b"application/json"))
        body = dump_bounded(message, self.max_message_bytes)
        try:
            if isinstance(message, Request):
                await self._post_request(message, body, all_headers)
                return
            async with self._request(b"POST", all_headers, body) as response:
                data = await response.read(self.max_received_bytes)
        except HttpClientError as exc:
            raise self._fail(str(exc)) from exc
        if response.status == 404 and self.session_id is not None:
            raise McpSessionExpired(self.target, "the server ended the session (HTTP 404)")
        if response.status >= 400:
            raise self._status_error(response.status, data)

    async def _post_request(
        self, request: Request, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        state = _SseState()
        async with self._request(b"POST", headers, body) as response:
            session_id = response.headers.get(SESSION_HEADER)
            if request.method == "initialize" and session_id:
                self.session_id = session_id
            content_type = response.headers.get("content-type", "").lower()
            if response.status == 200 and "text/event-stream" in content_type:
                if await self._read_sse(response, request.id, state):
                    return
            else:
                data = await response.read(self.max_received_bytes)
                if response.status == 404 and self.session_id is not None:
                    # Checked before the body: a 404 for a known session means the server lost
                    # it, whatever JSON-RPC error it wrote, and the request reached no handler.
                    raise McpSessionExpired(self.target, "the server ended the session (HTTP 404)")
                if "application/json" in content_type and await self._deliver_json(
                    data, request.id, response.status
                ):
                    return
                if response.status >= 400:
                    raise self._status_error(response.status, data)
                status = response.status
                raise self._fail(f"HTTP {status} without a response to {request.method}")
        await self._resume(request, state)

    async def _deliver_json(self, data: bytes, request_id: RequestId, status: int) -> bool:
        try:
            raw = json.loads(data)
        except ValueError:
            raise self._fail(f"HTTP {status} with a body that is not JSON") from None
        answered = False
        for item in raw if isinstance(raw, list) else [raw]:
            try:
                message = decode_message(item)
            except MessageDecodeError as exc:
                raise self._fail(f"invalid JSON-RPC from the server: {exc.message}") from None
            if isinstance(message, ErrorResponse) and message.id is None and status >= 400:
                # A refusal that could not name the request: it is about this one.
                message = ErrorResponse(request_id, message.error)
            if isinstance(message, (Response, ErrorResponse)) and message.id == request_id:
                answered = True
            await self._inbox.deliver(message)
        return answered

    async def _resume(self, request: Request, state: _SseState) -> None:
        for _attempt in range(_MAX_RESUMES):
            if state.last_event_id is None:
                break
            await trio.sleep(state.retry_ms / 1000)
            headers = self._headers({"Last-Event-ID": state.last_event_id}, _ACCEPT_SSE)
            try:
                async with self._request(b"GET", headers) as response:
                    content_type = response.headers.get("content-type", "").lower()
                    if response.status != 200 or "text/event-stream" not in content_type:
                        data = await response.read(self.max_received_bytes)
                        raise self._status_error(response.status, data)
                    if await self._read_sse(response, request.id, state):
                        return
            except HttpClientError as exc:
                raise self._fail(str(exc)) from exc
        raise self._fail(f"the response stream of {request.method} ended before its response")

    async def _read_sse(
        self, response: HttpResponse, request_id: RequestId | None, state: _SseState
    ) -> bool:
        """Deliver every message of an SSE stream; True once the response to ``request_id`` came."""
        data_lines: list[str] = []
        data_size = 0
        lines = LineReader(response, self.max_received_bytes)
        while (line := await lines.next_line()) is not None:
            if line == "":
                payload = "\n".join(data_lines)
                data_lines, data_size = [], 0
                if payload.strip() and await self._deliver_event(payload, request_id):
                    return True
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                data_size += len(value) + 1
                if data_size > self.max_received_bytes:
                    raise HttpClientError(
                        f"an event of the response stream is over {self.max_received_bytes} bytes"
                    )
                data_lines.append(value)
            elif field == "id" and "\0" not in value:
                state.last_event_id = value
            elif field == "retry" and value.isdigit():
                state.retry_ms = int(value)
        return False

    async def _deliver_event(self, payload: str, request_id: RequestId | None) -> bool:
        try:
            message = decode_message(json.loads(payload))
        except (ValueError, MessageDecodeError):
            logger.warning("ignoring an SSE event that is not a JSON-RPC message")
            return False
        await self._inbox.deliver(message)
        return isinstance(message, (Response, ErrorResponse)) and message.id == request_id

    async def session_ready(self) -> None:
        # Wait until the server accepted or refused the stream, so that it exists before the
        # first request (a server may route answers to it).
        await self._nursery.start(self._standalone_stream)

    async def _standalone_stream(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The GET stream for unsolicited server messages, kept open while the session lives.

        Reports started once the server accepted or refused the stream; a transport failure
        before that is the session's failure (raised out of ``session_ready``).
        """
        state = _SseState()
        reported = False
        with self._standalone_scope:
            for _attempt in range(_MAX_RESUMES):
                extra = {"Last-Event-ID": state.last_event_id} if state.last_event_id else {}
                headers = self._headers(extra, _ACCEPT_SSE)
                try:
                    async with self._request(b"GET", headers) as response:
                        content_type = response.headers.get("content-type", "").lower()
                        if response.status != 200 or "text/event-stream" not in content_type:
                            await response.read(self.max_received_bytes)
                            if not reported:
                                task_status.started()
                            return  # 405 and the like: the server offers no such stream
                        if not reported:
                            reported = True
                            task_status.started()
                        await self._read_sse(response, None, state)
                except McpHttpStatusError:
                    # Refused authorization (the hook let the 401/403 stand): like a 405, the
                    # session goes on without the stream; requests meet the refusal themselves.
                    if not reported:
                        task_status.started()
                    return
                except HttpClientError as exc:
                    if not reported:
                        raise self._fail(f"the standalone stream failed: {exc}") from exc
                    logger.debug("standalone stream of %s broke: %s", self.target, exc)
                except Exception as exc:
                    # The auth hook's own error (a login is needed) while re-opening the stream:
                    # the requests that need the session raise it in their callers' tasks.
                    if not reported or self._auth is None:
                        raise
                    logger.debug("standalone stream of %s ended: %s", self.target, exc)
                    return
                await trio.sleep(state.retry_ms / 1000)

    async def close(self) -> None:
        self._standalone_scope.cancel()
        if self.session_id is None:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            try:
                # The session's credential as it was: no refresh or login started here, which
                # would outlast the two seconds (a refresh, once sent, is seen through).
                delete = self._request(b"DELETE", self._headers({}, b"*/*"), ask_hook=False)
                async with delete as response:
                    await response.read(self.max_received_bytes)
            except HttpClientError as exc:
                logger.debug("DELETE of the session at %s failed: %r", self.target, exc)
            except Exception as exc:
                # Refused (401/403) or the auth hook's own error: ending the session is a
                # courtesy to the server, nothing to raise out of a disconnect for.
                if self._auth is None and not isinstance(exc, McpHttpStatusError):
                    raise
                logger.debug("DELETE of the session at %s failed: %s", self.target, type(exc))


def _spellings(credential: bytes) -> set[bytes]:
    """The credential as sent, JSON-escaped (the slash optionally too), URL-encoded."""
    text = credential.decode("latin-1")
    escaped = json.dumps(text)[1:-1]
    forms = {text, escaped, escaped.replace("/", "\\/"), quote(text, safe=""), quote_plus(text)}
    return {form.encode("latin-1", "replace") for form in forms if form}


async def _read_at_most(response: HttpResponse, limit: int) -> bytes:
    """The body's first ``limit`` bytes (the rest unread: the pool closes that connection)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := await response.receive_some()):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit]


def http_transport(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout: float = 10.0,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    max_received_bytes: int = MAX_RECEIVED_BYTES,
    auth: HttpAuth | None = None,
) -> TransportFactory:
    """A Streamable HTTP transport; ``headers`` for static headers, ``ssl_context`` for (m)TLS,
    ``max_message_bytes`` the server's bound on one request, ``max_received_bytes`` ours on one
    message from it (a body, an SSE event, an SSE line), ``auth`` the hook that authorizes
    every request (POST, the GET stream, DELETE) and is asked on a 401/403."""

    @asynccontextmanager
    async def open_transport(inbox: ClientInbox) -> AsyncIterator[HttpTransport]:
        try:
            pool = HttpPool(url, ssl_context=ssl_context, connect_timeout=connect_timeout)
        except ValueError as exc:
            raise McpConnectionError(url, str(exc)) from None
        base = [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
        try:
            async with trio.open_nursery() as nursery:
                transport = HttpTransport(url, pool, inbox, nursery, base, auth=auth)
                transport.max_message_bytes = max_message_bytes
                transport.max_received_bytes = max_received_bytes
                try:
                    yield transport
                finally:
                    await transport.close()
                    nursery.cancel_scope.cancel()
        finally:
            await pool.aclose()

    return open_transport
