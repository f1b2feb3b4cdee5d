"""Answering one POST: plain JSON when the first thing its requests produce is their response,
otherwise an SSE stream (each event kept for resumption), with keep-alives."""

from __future__ import annotations

import functools
from typing import Final

import attrs
import trio

from ...protocol._jsonrpc import dump_message
from ...protocol._messages import (
    HEADER_MISMATCH,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_CLIENT_CAPABILITY,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    ErrorResponse,
    Message,
    Request,
    Response,
)
from .._session import ServerSession
from ._asgi import AsgiMessage, HttpSettings, Receive, Send
from ._sse import SSE_HEADERS, EventStream, sse_event

# HTTP statuses of stateless-era errors that concern the request as a whole, not its handling.
STATELESS_ERROR_STATUS: Final = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    METHOD_NOT_FOUND: 404,
    HEADER_MISMATCH: 400,
    MISSING_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
}


@attrs.frozen
class PostReply:
    """How one POST is answered."""

    json_ok: bool  # the client accepts a plain JSON answer
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()
    # The session's stream the events are kept in (handshake era), for resumption.
    stream: EventStream | None = None
    priming: bool = False  # open the stream with an id-only event (2025-11-25 on)
    # The stateless era: a closed response stream is the request's cancellation.
    cancel_on_disconnect: bool = False


@attrs.define(eq=False)
class PostResponder:
    """Writes one POST's answer: JSON when possible, else an SSE stream that can be resumed."""

    send: Send
    settings: HttpSettings
    extra_headers: list[tuple[bytes, bytes]]
    json_ok: bool
    expected_responses: int
    stream: EventStream | None
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
                    status = STATELESS_ERROR_STATUS.get(message.error.code, 200)
                await self._write_json(payload, status)
                return
            if not self.started:
                self.started = self.streaming = True
                await self._start_sse()
            event_id = None
            if self.stream is not None:
                seq = self.stream.append(payload)
                event_id = f"{self.stream.stream_id}:{seq}"
            await self._write(sse_event(payload, event_id), more=True)

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
                "headers": SSE_HEADERS + self.extra_headers,
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


async def answer_post(
    session: ServerSession,
    requests: list[Request],
    receive: Receive,
    send: Send,
    settings: HttpSettings,
    reply: PostReply,
) -> None:
    """Run ``requests`` on ``session`` and write their answers as ``reply`` says."""
    async with trio.open_nursery() as nursery:
        responder = PostResponder(
            send,
            settings,
            list(reply.extra_headers),
            reply.json_ok,
            len(requests),
            reply.stream,
            reply.priming,
            nursery,
            stateless=session.stateless,
        )
        close_stream = responder.close_stream if reply.stream is not None else None

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            responder.connected = False
            if reply.cancel_on_disconnect:
                work.cancel()

        nursery.start_soon(watch_disconnect)
        with trio.CancelScope() as work:
            if len(requests) == 1:
                await session.handle_request(requests[0], responder.emit, close_stream=close_stream)
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
