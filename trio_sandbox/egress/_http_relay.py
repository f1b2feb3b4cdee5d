"""HTTP/1.1 bodies and request streams relayed over any byte stream (a socket, TLS over one).

The forward proxy and the interception path share these, so a message is framed one way only:
bodies are passed in the framing they came in (Content-Length, chunked with its extensions and
trailers, or until close), checked as they go so the end of a message is known, never buffered
whole.
"""

from __future__ import annotations

import contextlib
import http
import math
from collections.abc import Callable
from typing import Any, Final

import trio

from ..concurrency import Buffered, ByteCounter, LineTooLong, Pump, StreamEnded
from ._errors import HttpError
from ._http_head import (
    MAX_CHUNK_LINE,
    MAX_HEAD_BYTES,
    Body,
    Framing,
    RequestHead,
    parse_chunk_size,
    parse_fields,
    parse_request_head,
    request_body,
    split_lines,
    write_head,
)
from ._policy import Refused

LINGER_SECONDS: Final = 2.0
LINGER_BYTES: Final = 1 << 20
BROKEN: Final = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, StreamEnded)


def error_response(status: int, text: str, *, proxy_error: str | None, close: bool) -> bytes:
    body = (text + "\n").encode("utf-8", "backslashreplace")
    fields = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    if proxy_error is not None:
        fields.append(("X-Proxy-Error", proxy_error))
    if close:
        fields.append(("Connection", "close"))
    return write_head(f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}", fields) + body


def refusal_response(refusal: Refused, *, close: bool) -> bytes:
    status = refusal.kind.status
    verdict = "refused" if status != 502 else "failed"
    return error_response(
        status, f"{verdict} {refusal}", proxy_error=refusal.kind.value, close=close
    )


def _uncounted(_size: int) -> None:
    pass


async def answer_and_close(client: Buffered[Any], response: bytes) -> None:
    """Send a final error response, then close without losing it: closing a socket with
    unread input makes the kernel send RST, which can destroy the response in flight, so
    the rest of the request is read and dropped first (bounded in time and size). A stream that
    cannot half-close (TLS) is only drained; its owner closes it."""
    with contextlib.suppress(*BROKEN):
        await client.stream.send_all(response)
        if isinstance(client.stream, trio.abc.HalfCloseableStream):
            await client.stream.send_eof()
        with trio.move_on_after(LINGER_SECONDS):
            drained = 0
            while drained < LINGER_BYTES and (data := await client.stream.receive_some()):
                drained += len(data)


async def relay_body(
    source: Buffered[Any],
    sink: trio.abc.SendStream,
    body: Body,
    count: ByteCounter,
    zero_copy: bool,
) -> None:
    pump = Pump(zero_copy)
    try:
        if body.framing is Framing.LENGTH:
            await pump.move(source, sink, count, body.length)
        elif body.framing is Framing.UNTIL_CLOSE:
            await pump.move(source, sink, count, None)
        elif body.framing is Framing.CHUNKED:
            await relay_chunked(source, sink, count, pump)
    finally:
        pump.close()


async def relay_chunked(
    source: Buffered[Any], sink: trio.abc.SendStream, count: ByteCounter, pump: Pump
) -> None:
    """A chunked body passed through as it is (extensions and trailers included), its framing
    checked as it goes so the end of the message is known."""
    try:
        while True:
            line = await source.read_until(b"\r\n", MAX_CHUNK_LINE)
            size = parse_chunk_size(line)
            await sink.send_all(line)
            count(len(line))
            if size == 0:
                break
            await pump.move(source, sink, count, size)
            if await source.read_exactly(2) != b"\r\n":
                raise HttpError(400, "a chunk does not end with CRLF")
            await sink.send_all(b"\r\n")
            count(2)
        await sink.send_all(await read_trailers(source, count, 400))
    except LineTooLong:
        raise HttpError(400, "a chunk-size line is too long") from None


async def read_trailers(source: Buffered[Any], count: ByteCounter, status: int) -> bytes:
    """The trailer section of a chunked body, up to its empty line, checked as strictly as a
    head (a bare CR or LF in it, which the next hop may read as a line end, would smuggle
    what follows as a request): :class:`HttpError` with ``status`` if it is not valid."""
    section = bytearray()
    try:
        while True:
            line = await source.read_until(b"\r\n", MAX_HEAD_BYTES - len(section))
            count(len(line))
            section += line
            if line == b"\r\n":
                break
    except LineTooLong:
        raise HttpError(status, f"trailers larger than {MAX_HEAD_BYTES} bytes") from None
    if len(section) > 2:
        parse_fields(split_lines(bytes(section[:-2]), status), status)
    return bytes(section)


async def read_request_head(
    source: Buffered[Any], head_timeout: float = math.inf
) -> RequestHead | None:
    """The next request head (CRLFs before it skipped, RFC 9112 2.2); None if the stream ended
    before one began. :class:`HttpError` if it is malformed, too large, cut off, or not whole
    within ``head_timeout`` seconds of its first byte (408)."""
    while not source.buffer.lstrip(b"\r\n"):
        source.buffer.clear()
        if not await source.fill():
            return None
    del source.buffer[: len(source.buffer) - len(source.buffer.lstrip(b"\r\n"))]
    try:
        with trio.fail_after(head_timeout):
            return parse_request_head(await source.read_until(b"\r\n\r\n", MAX_HEAD_BYTES))
    except trio.TooSlowError:
        raise HttpError(408, f"the request head did not arrive within {head_timeout:g} s") from None
    except LineTooLong:
        raise HttpError(431, f"request head larger than {MAX_HEAD_BYTES} bytes") from None
    except StreamEnded:
        raise HttpError(400, "the stream ended within a request head") from None


class IncompleteRequest(HttpError):
    """A request whose head was sent failed within its body: the next hop holds part of a
    message, so the connection to it cannot go on."""


async def relay_requests(
    source: Buffered[Any],
    sink: trio.abc.SendStream,
    rewrite: Callable[[RequestHead], bytes],
    *,
    count: ByteCounter = _uncounted,
    head_timeout: float = math.inf,
) -> RequestHead | None:
    """Requests from ``source`` to ``sink``, one after the other as they come (pipelined ones
    too), until ``source`` ends (None), a request asks to switch protocols (that head, once
    sent) or a request wants the connection closed (that head, once its body is sent: what
    the client sends after it is not read, as the origin would not read it either). Each head
    goes out as ``rewrite`` writes it (which may raise :class:`HttpError`: then nothing of
    that request is sent), its body after it in its framing, untouched
    (:class:`IncompleteRequest` if the body is malformed)."""
    while True:
        head = await read_request_head(source, head_timeout)
        if head is None:
            return None
        written = rewrite(head)
        await sink.send_all(written)
        count(len(written))
        try:
            await relay_body(source, sink, request_body(head), count, zero_copy=False)
        except HttpError as error:
            raise IncompleteRequest(error.status, error.reason) from None
        if head.method == "CONNECT" or any(name.lower() == "upgrade" for name, _ in head.fields):
            return head
        if head.wants_close:
            return head
