"""A small HTTP/1.1 client on h11 and Trio streams, for the Streamable HTTP client transport.

Why not httpx on this path: per call it cost about three times the CPU of the whole h11
exchange, wrote every request in two socket sends (head, then body), and reads bodies through
async generators nested six deep, which Trio reports as unfinalized whenever a reader stops
early (an SSE stream left once its answer came). Here a request is one ``send_all``, a body is
read with plain awaits, and a connection goes back to a keep-alive pool once its response was
read to the end (otherwise it is closed).
"""

from __future__ import annotations

import codecs
import re
import ssl
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Final
from urllib.parse import urlsplit

import attrs
import h11
import trio

from ..protocol._errors import HttpClientError

_RECEIVE_SIZE: Final = 65536
_USER_AGENT: Final = b"trio-sandbox-mcp"
_LINE_END: Final = re.compile("\r\n|\r|\n")


@attrs.define(eq=False)
class _Connection:
    stream: trio.abc.Stream
    protocol: h11.Connection = attrs.field(factory=lambda: h11.Connection(h11.CLIENT))

    def _socket_stream(self) -> trio.SocketStream | None:
        stream = self.stream
        if isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        return stream if isinstance(stream, trio.SocketStream) else None

    def looks_closed(self) -> bool:
        """An idle keep-alive connection with something to read has been closed by the server."""
        socket_stream = self._socket_stream()
        return socket_stream is not None and socket_stream.socket.is_readable()

    async def close(self) -> None:
        """Close at once, without a TLS goodbye, even in a cancelled scope."""
        socket_stream = self._socket_stream()
        if socket_stream is not None:
            # Synchronous: aclose_forcefully() still raises Cancelled when an enclosing scope is
            # cancelled, which would stop a loop closing several connections.
            socket_stream.socket.close()
        else:
            await trio.aclose_forcefully(self.stream)


@attrs.define(eq=False)
class HttpResponse:
    """A response being read; ``headers`` has lower-case names (the last of repeated ones)."""

    status: int
    headers: dict[str, str]
    _connection: _Connection
    complete: bool = False

    async def receive_some(self) -> bytes:
        """The next piece of the body; b"" once it has all been read."""
        protocol = self._connection.protocol
        while not self.complete:
            event = protocol.next_event()
            if event is h11.NEED_DATA:
                protocol.receive_data(
                    bytes(await self._connection.stream.receive_some(_RECEIVE_SIZE))
                )
            elif isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.complete = True
            else:
                raise HttpClientError(f"unexpected HTTP event {type(event).__name__}")
        return b""

    async def read(self, limit: int) -> bytes:
        """The whole body; :class:`HttpClientError` once it is over ``limit`` bytes (nothing
        more is read: the connection is not reused)."""
        chunks = []
        size = 0
        while chunk := await self.receive_some():
            size += len(chunk)
            if size > limit:
                raise HttpClientError(f"the response body is over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


class HttpPool:
    """Keep-alive connections to one origin (scheme, host, port), opened on demand."""

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 10.0,
        max_idle: int = 64,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.hostname is None:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.https = parts.scheme == "https"
        self.hostname = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        default_port = parts.port is None
        self.host_header = (host if default_port else f"{host}:{self.port}").encode()
        self.target = ((parts.path or "/") + (f"?{parts.query}" if parts.query else "")).encode()
        self.ssl_context = ssl_context
        if self.https and ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self._idle: list[_Connection] = []
        self._closed = False

    async def _connect(self) -> _Connection:
        try:
            with trio.fail_after(self.connect_timeout):
                stream: trio.abc.Stream = await trio.open_tcp_stream(self.hostname, self.port)
                if self.ssl_context is not None:
                    tls = trio.SSLStream(
                        stream,
                        self.ssl_context,
                        server_hostname=self.hostname,
                        https_compatible=True,
                    )
                    try:
                        await tls.do_handshake()
                    except BaseException:
                        await trio.aclose_forcefully(stream)
                        raise
                    stream = tls
        except trio.TooSlowError:
            raise HttpClientError(
                f"ConnectTimeout: no connection within {self.connect_timeout} s"
            ) from None
        except (OSError, trio.BrokenResourceError) as exc:
            raise HttpClientError(f"ConnectError: {exc}") from exc
        return _Connection(stream)

    async def _take(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.looks_closed():
                return connection
            await connection.close()
        return await self._connect()

    @asynccontextmanager
    async def request(
        self,
        method: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes = b"",
    ) -> AsyncIterator[HttpResponse]:
        """Send one request (one write) and yield its response once the head arrived."""
        connection = await self._take()
        reusable = False
        try:
            try:
                head = [(b"Host", self.host_header), (b"User-Agent", _USER_AGENT), *headers]
                if body or method == b"POST":
                    head.append((b"Content-Length", str(len(body)).encode()))
                protocol = connection.protocol
                pieces = [
                    protocol.send(h11.Request(method=method, target=self.target, headers=head))
                ]
                if body:
                    pieces.append(protocol.send(h11.Data(data=body)))
                pieces.append(protocol.send(h11.EndOfMessage()))
                await connection.stream.send_all(b"".join(piece for piece in pieces if piece))
                response = await _receive_head(connection)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise HttpClientError(f"{type(exc).__name__}: {exc}") from exc
            except h11.ProtocolError as exc:
                raise HttpClientError(f"RemoteProtocolError: {exc}") from exc
            try:
                yield response
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise HttpClientError(f"ReadError: {type(exc).__name__}: {exc}") from exc
            except h11.ProtocolError as exc:
                raise HttpClientError(f"RemoteProtocolError: {exc}") from exc
            reusable = (
                response.complete
                and protocol.our_state is h11.DONE
                and protocol.their_state is h11.DONE
            )
            if reusable:
                protocol.start_next_cycle()
        finally:
            if reusable and not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(connection)
            else:
                await connection.close()

    async def aclose(self) -> None:
        self._closed = True  # a request still running closes its connection when it ends
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()


async def _receive_head(connection: _Connection) -> HttpResponse:
    protocol = connection.protocol
    while True:
        event = protocol.next_event()
        if event is h11.NEED_DATA:
            data = bytes(await connection.stream.receive_some(_RECEIVE_SIZE))
            if not data and protocol.their_state is h11.SEND_RESPONSE:
                raise HttpClientError("RemoteProtocolError: the server closed without a response")
            protocol.receive_data(data)
        elif isinstance(event, h11.InformationalResponse):
            continue
        elif isinstance(event, h11.Response):
            headers = {
                name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers
            }
            return HttpResponse(event.status_code, headers, connection)
        else:
            raise HttpClientError(f"RemoteProtocolError: unexpected {type(event).__name__}")


@attrs.define(eq=False)
class LineReader:
    """A response body as text lines without their ends (CRLF, LF or CR, as SSE allows), each
    at most ``max_line`` characters (longer: :class:`HttpClientError`).

    Plain awaits rather than an async generator, so that a reader may stop at any line. Only
    each new chunk is searched for line ends: a long line costs its length, not its square.
    """

    _response: HttpResponse
    _max_line: int
    _decoder: codecs.IncrementalDecoder = attrs.field(
        factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _partial: list[str] = attrs.field(factory=list)  # the line so far, in pieces
    _partial_size: int = 0
    _held_cr: bool = False  # a CR ended the last chunk: it may be the first half of a CRLF
    _ready: deque[str] = attrs.field(factory=deque)
    _ended: bool = False

    async def next_line(self) -> str | None:
        """The next line, or None at the end of the body."""
        while not self._ready:
            if self._ended:
                return None
            chunk = await self._response.receive_some()
            final = not chunk
            text = self._decoder.decode(chunk, final=final)
            if self._held_cr:
                text = "\r" + text
            self._held_cr = not final and text.endswith("\r")
            if self._held_cr:
                text = text[:-1]
            parts = _LINE_END.split(text)
            self._grow(parts[0])
            if len(parts) == 1 and not final:
                continue  # no line end yet
            lines = ["".join(self._partial), *parts[1:]]
            self._partial, self._partial_size = [], 0
            if final:
                self._ended = True
                if lines[-1] == "":
                    lines.pop()
            else:
                self._grow(lines.pop())
            if any(len(line) > self._max_line for line in lines):
                raise HttpClientError(f"a line of the response is over {self._max_line} characters")
            self._ready.extend(lines)
        return self._ready.popleft()

    def _grow(self, piece: str) -> None:
        self._partial.append(piece)
        self._partial_size += len(piece)
        if self._partial_size > self._max_line:
            raise HttpClientError(f"a line of the response is over {self._max_line} characters")
