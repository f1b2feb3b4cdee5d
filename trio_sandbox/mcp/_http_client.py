"""The Streamable HTTP client transport, on httpx under Trio.

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
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Final

import attrs
import httpx
import trio

from ._client import (
    ClientInbox,
    McpConnectionError,
    McpHttpStatusError,
    McpSessionExpired,
    TransportFactory,
)
from ._jsonrpc import (
    ErrorResponse,
    Message,
    MessageDecodeError,
    Request,
    RequestId,
    Response,
    decode_message,
    dump_message,
)

logger = logging.getLogger("trio_sandbox.mcp.http_client")

_MAX_RESUMES: Final = 8
_DEFAULT_RETRY_MS: Final = 1000


@attrs.define
class _SseState:
    last_event_id: str | None = None
    retry_ms: int = _DEFAULT_RETRY_MS


@attrs.define(eq=False)
class HttpTransport:
    target: str
    _client: httpx.AsyncClient
    _inbox: ClientInbox
    _nursery: trio.Nursery
    _base_headers: dict[str, str]
    protocol_version: str | None = None
    session_id: str | None = None
    closes_stream_to_cancel: bool = True
    _standalone_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)

    def set_protocol_version(self, version: str | None) -> None:
        self.protocol_version = version

    def _headers(self, extra: Mapping[str, str], accept: str) -> dict[str, str]:
        headers = {**self._base_headers, "Accept": accept, **extra}
        if self.protocol_version is not None:
            headers["MCP-Protocol-Version"] = self.protocol_version
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
        return headers

    def _fail(self, reason: str) -> McpConnectionError:
        return McpConnectionError(self.target, reason)

    async def send(self, message: Message, headers: Mapping[str, str]) -> None:
        all_headers = self._headers(headers, "application/json, text/event-stream")
        all_headers["Content-Type"] = "application/json"
        body = dump_message(message)
        try:
            if isinstance(message, Request):
                await self._post_request(message, body, all_headers)
                return
            response = await self._client.post(self.target, content=body, headers=all_headers)
        except httpx.HTTPError as exc:
            raise self._fail(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 404 and self.session_id is not None:
            raise McpSessionExpired(self.target, "the server ended the session (HTTP 404)")
        if response.status_code >= 400:
            raise McpHttpStatusError(self.target, response.status_code, response.content)

    async def _post_request(self, request: Request, body: bytes, headers: dict[str, str]) -> None:
        state = _SseState()
        async with self._client.stream(
            "POST", self.target, content=body, headers=headers
        ) as response:
            session_id = response.headers.get("mcp-session-id")
            if request.method == "initialize" and session_id:
                self.session_id = session_id
            content_type = response.headers.get("content-type", "").lower()
            if response.status_code == 200 and "text/event-stream" in content_type:
                if await self._read_sse(response, request.id, state):
                    return
            else:
                data = await response.aread()
                if response.status_code == 404 and self.session_id is not None:
                    # Checked before the body: a 404 for a known session means the server lost
                    # it, whatever JSON-RPC error it wrote, and the request reached no handler.
                    raise McpSessionExpired(self.target, "the server ended the session (HTTP 404)")
                if "application/json" in content_type and await self._deliver_json(
                    data, request.id, response.status_code
                ):
                    return
                if response.status_code >= 400:
                    raise McpHttpStatusError(self.target, response.status_code, data)
                status = response.status_code
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
            headers = self._headers({"Last-Event-ID": state.last_event_id}, "text/event-stream")
            async with self._client.stream("GET", self.target, headers=headers) as response:
                content_type = response.headers.get("content-type", "").lower()
                if response.status_code != 200 or "text/event-stream" not in content_type:
                    data = await response.aread()
                    raise McpHttpStatusError(self.target, response.status_code, data)
                if await self._read_sse(response, request.id, state):
                    return
        raise self._fail(f"the response stream of {request.method} ended before its response")

    async def _read_sse(
        self, response: httpx.Response, request_id: RequestId | None, state: _SseState
    ) -> bool:
        """Deliver every message of an SSE stream; True once the response to ``request_id`` came."""
        data_lines: list[str] = []
        async with _finishing(response.aiter_lines()) as lines:
            async for line in lines:
                if line == "":
                    payload = "\n".join(data_lines)
                    data_lines = []
                    if payload.strip() and await self._deliver_event(payload, request_id):
                        return True
                    continue
                if line.startswith(":"):
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "data":
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
        """The GET stream for unsolicited server messages, kept open while the session lives."""
        state = _SseState()
        with self._standalone_scope:
            try:
                for _attempt in range(_MAX_RESUMES):
                    extra = {"Last-Event-ID": state.last_event_id} if state.last_event_id else {}
                    headers = self._headers(extra, "text/event-stream")
                    try:
                        async with self._client.stream(
                            "GET", self.target, headers=headers
                        ) as response:
                            content_type = response.headers.get("content-type", "").lower()
                            if (
                                response.status_code != 200
                                or "text/event-stream" not in content_type
                            ):
                                return  # 405 and the like: the server offers no such stream
                            task_status.started()
                            task_status = trio.TASK_STATUS_IGNORED
                            await self._read_sse(response, None, state)
                    except httpx.HTTPError as exc:
                        logger.debug("standalone stream of %s broke: %r", self.target, exc)
                    await trio.sleep(state.retry_ms / 1000)
            finally:
                task_status.started()

    async def close(self) -> None:
        self._standalone_scope.cancel()
        if self.session_id is None:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            try:
                await self._client.delete(self.target, headers=self._headers({}, "*/*"))
            except httpx.HTTPError as exc:
                logger.debug("DELETE of the session at %s failed: %r", self.target, exc)


@asynccontextmanager
async def _finishing(lines: AsyncIterator[str]) -> AsyncIterator[AsyncIterator[str]]:
    """Yield ``lines`` (httpx's ``aiter_lines()``) and finish it however the reader leaves.

    httpx nests async generators several deep (lines -> text -> bytes -> raw -> httpcore), and
    ``aclose()`` finishes only the outermost: the inner ones would be left for Trio to finalize,
    with a ResourceWarning. Reading on under a cancelled scope instead consumes what is already
    buffered, then makes the innermost network read raise Cancelled, which unwinds and finishes
    every generator of the chain (and httpcore closes or releases the connection).
    """
    try:
        yield lines
    finally:
        with trio.CancelScope() as drain:
            drain.cancel()
            try:
                async for _line in lines:
                    pass
            except (httpx.HTTPError, httpx.StreamError):
                pass  # the stream broke or was closed: its generators are finished either way


def http_transport(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout: float = 10.0,
) -> TransportFactory:
    """A Streamable HTTP transport; ``headers`` for bearer tokens, ``ssl_context`` for (m)TLS."""

    @asynccontextmanager
    async def open_transport(inbox: ClientInbox) -> AsyncIterator[HttpTransport]:
        timeout = httpx.Timeout(connect_timeout, read=None, write=connect_timeout, pool=None)
        verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        async with (
            httpx.AsyncClient(verify=verify, timeout=timeout) as client,
            trio.open_nursery() as nursery,
        ):
            transport = HttpTransport(url, client, inbox, nursery, dict(headers or {}))
            try:
                yield transport
            finally:
                await transport.close()
                nursery.cancel_scope.cancel()

    return open_transport
