"""Interception: TLS terminated for a host a secret is injected for, and made again to it.

The client's TLS is answered with a leaf of the sandbox's own CA (``Injection.server_context``);
the origin is reached as any client would (``Injection.upstream_context``: the host's trust
store, SNI the name asked for, ALPN ``http/1.1``). Between the two, HTTP/1.1 requests go one
after the other (pipelined ones too) through the one parser of this package: each head must be
for the tunnel's host (else 421: a CDN routes by Host), carries no placeholder of a secret
scoped elsewhere (else 403), and goes out with the placeholders of the host's secrets replaced
in its target and header values; bodies pass untouched in their framing. Response heads have
the values put back as placeholders before they are read.
"""

from __future__ import annotations

import collections
import contextlib
import math
import ssl
from collections.abc import Sequence
from typing import Any, Final

import attrs
import trio

from ..concurrency import (
    RELAY_CHUNK,
    AsyncValue,
    Buffered,
    BufferedSocket,
    ByteCounter,
    LineTooLong,
    StreamEnded,
)
from ._client_hello import is_tls_handshake
from ._dial import Dialer, OutboundConnection
from ._errors import DestinationError, HttpError
from ._http_head import (
    MAX_CHUNK_LINE,
    MAX_HEAD_BYTES,
    Body,
    Fields,
    Framing,
    RequestHead,
    ResponseHead,
    end_to_end,
    field_values,
    parse_chunk_size,
    parse_response_head,
    request_body,
    response_body,
    write_head,
)
from ._http_relay import (
    BROKEN,
    LINGER_SECONDS,
    IncompleteRequest,
    answer_and_close,
    error_response,
    read_trailers,
    refusal_response,
    relay_requests,
)
from ._inject import (
    INJECT_SETTING,
    InjectedSecret,
    PlaceholderFound,
    PlaceholderMatcher,
    ResponseMask,
    StreamingReplacer,
    basic_blob,
)
from ._names import format_host, parse_host, parse_port, split_host_port
from ._policy import Destination, RefusalKind, Refused

_HTTP2_PREFACE: Final = b"PRI * HTTP/2.0"
_CLOSE_SECONDS: Final = 1.0
# A response body that pauses this long gets the bytes the masking holds back (an event
# stream's last event must not wait for the next one); a time, never a look at the content.
PAUSE_FLUSH_SECONDS: Final = 0.1
_HTTP2_ONLY: Final = (
    "HTTP/2-only clients (gRPC) cannot use inject_secrets: the proxy speaks HTTP/1.1 to the"
    " client and the origin (it offers only http/1.1 in ALPN); nothing was sent"
)
_REFUSED_BY_ORIGIN: Final = (
    "the origin refused the proxy's re-made TLS connection: origins that fingerprint TLS"
    " clients, pin, or require client certificates cannot be used"
)
_CLIENT_DISTRUSTS: Final = (
    "the client did not trust the interception CA: use the system bundle or"
    " SSL_CERT_FILE/NODE_EXTRA_CA_CERTS (set for every command); own CA lists or pinning cannot"
    " use inject_secrets"
)


class _Refusal(Exception):
    """A request answered inside the tunnel and not forwarded."""

    def __init__(self, refused: Refused) -> None:
        super().__init__(refused.reason)
        self.refused = refused


@attrs.define(eq=False)
class PrefixedStream(trio.abc.Stream):
    """A socket whose first bytes were already read into a buffer: they are received first."""

    inner: BufferedSocket

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.inner.buffer:
            await trio.lowlevel.checkpoint()
            return self.inner.take(max_bytes)
        return await self.inner.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.stream.aclose()


# Request fields the interception writes itself.
_REWRITTEN: Final = frozenset({"accept-encoding", "transfer-encoding", "content-length"})


def _framing(head: RequestHead) -> Fields:
    """The framing fields of ``head``'s body, written from how it was parsed."""
    body = request_body(head)
    if body.framing is Framing.CHUNKED:
        return (("Transfer-Encoding", "chunked"),)
    if body.framing is Framing.LENGTH or field_values(head.fields, "content-length"):
        return (("Content-Length", str(body.length)),)
    return ()


def _names(secrets: Sequence[InjectedSecret]) -> str:
    return ", ".join(secret.name for secret in secrets)


def origin_failure(error: BaseException, timeout: float) -> str:
    """Why the re-made TLS connection to the origin failed, as the client reads it."""
    if isinstance(error, trio.TooSlowError):
        return f"no TLS handshake from the origin within {timeout:g} s"
    cause = error.__cause__ if isinstance(error, trio.BrokenResourceError) else error
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            "the origin's certificate is not trusted by the host's trust store"
            f" (SSL_CERT_FILE): {cause.verify_message}"
        )
    detail = getattr(cause, "reason", None) or type(cause).__name__
    return f"{_REFUSED_BY_ORIGIN} ({detail})"


@attrs.define(eq=False)
class _Interception:
    dialer: Dialer
    protocol: str
    upstream: OutboundConnection
    scoped: tuple[InjectedSecret, ...]
    matcher: PlaceholderMatcher
    response_mask: ResponseMask
    answered: int = 0  # responses relayed so far

    @property
    def destination(self) -> Destination:
        return self.upstream.destination

    def refused(self, kind: RefusalKind, reason: str) -> Refused:
        refused = Refused(str(self.destination), kind, reason)
        rule = self.upstream.allowed.rule.entry
        return self.dialer.refuse(self.protocol, refused, rule, on=self.upstream)

    def rewrite(self, head: RequestHead) -> bytes:
        """The head as it goes to the origin; :class:`_Refusal` if it must not."""
        if any(name.lower() == "upgrade" for name, _ in head.fields):
            raise HttpError(
                501, "switching protocols (WebSocket) is not relayed through interception"
            )
        target = self._origin_form(head)
        # Host is the name the tunnel was checked for, normalised, never the client's text
        # (an IDNA form, ``:0443`` or a trailing dot an origin may read as another host).
        destination = self.destination
        host = format_host(destination.host) if destination.port == 443 else str(destination)
        replaced = self.matcher.substitute_head(attrs.evolve(head, target=target), self.scoped)
        if isinstance(replaced, PlaceholderFound):
            raise _Refusal(self.refused(RefusalKind.SECRET_OUT_OF_SCOPE, replaced.reason()))
        self._record_blobs(head.fields, replaced.fields)
        # Responses come uncompressed: a value echoed inside a compressed body could not be
        # masked (a response that is compressed anyway is refused, see _unmaskable). The
        # framing fields are written from the body as parsed, never as the client spelled them
        # (``Transfer-Encoding: ,chunked`` or ``Content-Length: 5, 5`` read otherwise by the
        # origin would make the rest of the body a request of its own).
        fields = [
            (name, value)
            for name, value in end_to_end(replaced.fields)
            if name.lower() not in _REWRITTEN
        ]
        return write_head(
            f"{replaced.method} {replaced.target} {replaced.version}",
            (
                ("Host", host),
                *fields,
                *_framing(head),
                ("Accept-Encoding", "identity"),
                *((("Connection", "close"),) if head.wants_close else ()),
            ),
        )

    def _record_blobs(self, written: Fields, sent: Fields) -> None:
        """Each Basic credential blob sent for one the client wrote is masked back to it in
        responses (an origin that echoes the header gives the blob, which is the value in
        base64)."""
        for (_, before), (_, after) in zip(written, sent, strict=True):
            blob, original = basic_blob(after), basic_blob(before)
            if blob is not None and original is not None and blob != original:
                self.response_mask.record(blob, original)

    def _origin_form(self, head: RequestHead) -> str:
        """The target in origin form; 421 unless it and Host name this tunnel's host (a Host
        naming another virtual host would hand the value to it)."""
        hosts = [value for name, value in head.fields if name.lower() == "host"]
        target = head.target
        if target.lower().startswith("https://"):
            rest = target[len("https://") :]
            cut = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
            authority, target = rest[:cut], rest[cut:] or "/"
            # The authority of an absolute target wins over Host (RFC 9112 3.2.2).
            hosts = [authority]
        if not target.startswith("/") and target != "*":
            raise HttpError(400, f"request target {target[:80]!r} is not in origin form")
        if len(hosts) != 1 or not self._names_this_host(hosts[0]):
            shown = hosts[0][:80] if hosts else "(none)"
            raise _Refusal(
                self.refused(
                    RefusalKind.INTERCEPT_MISDIRECTED,
                    f"the request is for Host {shown!r}, not {self.destination}, the host the"
                    f" tunnel was opened to ({INJECT_SETTING} {_names(self.scoped)} is"
                    " replaced only there); nothing was sent",
                )
            )
        return target

    def _names_this_host(self, authority: str) -> bool:
        try:
            host, port_text = split_host_port(authority, bare_ipv6=False)
            port = 443 if not port_text else parse_port(port_text, authority)
            return Destination(parse_host(host), port) == self.destination
        except DestinationError:
            return False

    def mask(self, raw: bytes) -> bytes:
        """A response head with the values of the secrets turned back into placeholders."""
        return self.response_mask.apply(raw)


async def intercept_tunnel(
    client: BufferedSocket,
    upstream: OutboundConnection,
    dialer: Dialer,
    protocol: str,
    scoped: Sequence[InjectedSecret],
    *,
    handshake_timeout: float,
    idle_timeout: float,
) -> None:
    """Serve a granted tunnel to ``upstream``'s destination, whose ``scoped`` secrets are
    injected, until either side closes, or it stays ``idle_timeout`` seconds with no request
    under way (as the forward proxy closes an idle keep-alive connection); each request head
    must be whole within ``handshake_timeout`` seconds of its first byte (else 408). Every
    refusal and failure is reported as an event."""
    guard = dialer.guard
    if guard is None:
        raise AssertionError("interception without inject_secrets")
    interception = _Interception(
        dialer, protocol, upstream, tuple(scoped), guard.matcher, ResponseMask(tuple(scoped))
    )
    with trio.move_on_after(handshake_timeout):
        while len(client.buffer) < 2 and await client.fill():
            pass
    if not is_tls_handshake(bytes(client.buffer[:2])):
        await _not_tls(client, interception)
        return
    destination = upstream.destination
    server_context = await guard.injection.server_context(destination)
    upstream_context = await guard.injection.upstream_context()
    client_tls = trio.SSLStream(
        PrefixedStream(client), server_context, server_side=True, https_compatible=True
    )
    origin_tls = trio.SSLStream(
        upstream.socket.stream,
        upstream_context,
        server_hostname=str(destination.host),
        https_compatible=True,
    )
    client_error: BaseException | None = None
    origin_error: BaseException | None = None

    async def client_handshake() -> None:
        nonlocal client_error
        try:
            with trio.fail_after(handshake_timeout):
                await client_tls.do_handshake()
        except (*BROKEN, trio.TooSlowError) as error:
            client_error = error
            nursery.cancel_scope.cancel()

    async def origin_handshake() -> None:
        nonlocal origin_error
        try:
            with trio.fail_after(dialer.connect_timeout):
                await origin_tls.do_handshake()
        except (*BROKEN, trio.TooSlowError) as error:
            origin_error = error

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_handshake)
        nursery.start_soon(origin_handshake)
    try:
        if client_error is not None:
            interception.refused(RefusalKind.INTERCEPT_CLIENT_TLS, _client_failure(client_error))
            return
        if origin_error is not None:
            reason = origin_failure(origin_error, dialer.connect_timeout)
            refused = interception.refused(RefusalKind.INTERCEPT_ORIGIN_TLS, reason)
            await _answer_first_request(Buffered(client_tls), refused, handshake_timeout)
            return
        await _relay(
            interception,
            Buffered(client_tls),
            Buffered(origin_tls),
            head_timeout=handshake_timeout,
            idle_timeout=idle_timeout,
        )
    finally:
        with contextlib.suppress(*BROKEN), trio.move_on_after(_CLOSE_SECONDS):
            await client_tls.aclose()


def _client_failure(error: BaseException) -> str:
    if isinstance(error, trio.TooSlowError):
        return "the client did not finish its TLS handshake in time"
    cause = error.__cause__
    detail = getattr(cause, "reason", None) if cause is not None else None
    return f"{_CLIENT_DISTRUSTS} ({detail or 'the client closed the handshake'})"


async def _not_tls(client: BufferedSocket, interception: _Interception) -> None:
    """A client that does not start TLS in a tunnel to an injected host: a plain 400 if it
    speaks HTTP (naming why), else the tunnel closes."""
    if not client.buffer:
        return
    refused = interception.refused(
        RefusalKind.INTERCEPT_NOT_TLS,
        f"{INJECT_SETTING} {_names(interception.scoped)} is replaced for this host only over"
        " TLS: speak TLS (https://) in this tunnel; nothing was sent",
    )
    if b"HTTP/1." in client.buffer or bytes(client.buffer).startswith(_HTTP2_PREFACE):
        await answer_and_close(client, refusal_response(refused, close=True))


async def _answer_first_request(
    client: Buffered[trio.SSLStream[PrefixedStream]], refused: Refused, wait: float
) -> None:
    """The origin could not be reached over TLS: the client's first request (if it comes
    within ``wait`` seconds) gets the reason."""
    with contextlib.suppress(*BROKEN, LineTooLong, HttpError), trio.move_on_after(wait):
        await client.read_until(b"\r\n\r\n", MAX_HEAD_BYTES)
        await client.stream.send_all(refusal_response(refused, close=True))


async def _relay(
    interception: _Interception,
    client: Buffered[trio.SSLStream[PrefixedStream]],
    origin: Buffered[trio.SSLStream[trio.SocketStream]],
    *,
    head_timeout: float,
    idle_timeout: float,
) -> None:
    """Requests one way and responses the other, matched in order (the method of each request
    sent travels to the response side). The connection ends when the client has stopped
    sending and every response went back, when a response closes it, when the origin closes
    it between responses (as it would for a direct client, which then connects again), or
    after a refusal, answered once the responses before it went back."""
    upstream = interception.upstream
    sent, pending = trio.open_memory_channel[tuple[str, bool]](math.inf)
    outstanding = AsyncValue(0)

    def rewrite(head: RequestHead) -> bytes:
        written = interception.rewrite(head)
        sent.send_nowait((head.method, head.wants_close))
        outstanding.value += 1
        return written

    async def requests() -> None:
        final: bytes | None = None
        try:
            await relay_requests(
                client,
                origin.stream,
                rewrite,
                count=upstream.count_sent,
                head_timeout=head_timeout,
            )
        except _Refusal as refusal:
            final = refusal_response(refusal.refused, close=True)
        except IncompleteRequest:
            # Part of a malformed body went out: the origin may answer it or wait for the
            # rest, and what it answers could be mid-way to the client. The connection ends
            # (the client sees it close); waiting would hang on an origin that waits too.
            nursery.cancel_scope.cancel()
            return
        except HttpError as error:
            if error.status == 505:  # the HTTP/2 preface (PRI * HTTP/2.0), or another version
                refused = interception.refused(RefusalKind.INTERCEPT_HTTP2, _HTTP2_ONLY)
                final = refusal_response(refused, close=True)
            else:
                final = error_response(
                    error.status, error.reason, proxy_error="bad-request", close=True
                )
        except BROKEN:
            # Either side broke: if it was the origin (an alert after the handshake), the
            # response side says why, to a client that is still there; a bounded wait.
            with trio.move_on_after(LINGER_SECONDS):
                await outstanding.wait_value(lambda count: count == 0)
            nursery.cancel_scope.cancel()
            return
        # The client is done sending (or refused): the answers it waits for go back first,
        # for as long as an idle connection is kept (an origin that never answers a client
        # that has gone must not hold the tunnel).
        with trio.move_on_after(idle_timeout) as waited:
            await outstanding.wait_value(lambda count: count == 0)
        # (Not after a wait cut short: a response may be half-way to the client.)
        if final is not None and not waited.cancelled_caught:
            with contextlib.suppress(*BROKEN):
                await client.stream.send_all(final)
        nursery.cancel_scope.cancel()

    async def responses() -> None:
        try:
            while await _relay_response(interception, origin, client, pending, outstanding):
                pass
        except BROKEN:
            pass
        nursery.cancel_scope.cancel()

    async def idle() -> None:
        """Closes the tunnel once no request was under way for ``idle_timeout`` seconds."""
        while True:
            await outstanding.wait_value(lambda count: count == 0)
            with trio.move_on_after(idle_timeout):
                await outstanding.wait_value(lambda count: count > 0)
                continue
            nursery.cancel_scope.cancel()
            return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(requests)
        nursery.start_soon(responses)
        nursery.start_soon(idle)


async def _relay_response(
    interception: _Interception,
    origin: Buffered[trio.SSLStream[trio.SocketStream]],
    client: Buffered[trio.SSLStream[PrefixedStream]],
    pending: trio.MemoryReceiveChannel[tuple[str, bool]],
    outstanding: AsyncValue[int],
) -> bool:
    """The origin's next response (after its interim ones) for the oldest request sent;
    whether the connection goes on. The origin closing with no request waiting ends it."""
    upstream = interception.upstream
    try:
        while True:
            try:
                raw = await origin.read_until(b"\r\n\r\n", MAX_HEAD_BYTES)
            except StreamEnded:
                if outstanding.value == 0 and not origin.buffer:
                    return False  # closed between responses: the client sees it close
                raise
            raw = interception.mask(raw)
            upstream.count_received(len(raw))
            response = parse_response_head(raw)
            if response.status >= 200 or response.status == 101:
                break
            interim = f"HTTP/1.1 {response.status} {response.reason}"
            await client.stream.send_all(write_head(interim, end_to_end(response.fields)))
        try:
            method, client_closes = pending.receive_nowait()
        except trio.WouldBlock:
            raise HttpError(502, "the origin answered a request that was not sent") from None
        if response.status == 101:
            raise HttpError(502, "the origin switched protocols, which is not relayed")
        body = response_body(response, method)
        if body.framing is not Framing.NONE and (why := _unmaskable(response)) is not None:
            interception.refused(RefusalKind.INTERCEPT_ORIGIN_ENCODED, why)
            raise HttpError(502, why)
    except LineTooLong:
        failure = HttpError(502, f"response head larger than {MAX_HEAD_BYTES} bytes")
    except HttpError as error:
        failure = error
    except (*BROKEN, StreamEnded) as error:
        failure = _closed_by_origin(interception, error)
    else:
        closes = client_closes or response.closes or body.framing is Framing.UNTIL_CLOSE
        fields = end_to_end(response.fields)
        if closes:
            fields = (*fields, ("Connection", "close"))
        await client.stream.send_all(
            write_head(f"HTTP/1.1 {response.status} {response.reason}", fields)
        )
        replacer = StreamingReplacer(interception.response_mask)
        await relay_masked(origin, client.stream, body, upstream.count_received, replacer)
        outstanding.value -= 1
        interception.answered += 1
        return not closes
    await client.stream.send_all(
        error_response(
            failure.status,
            f"failed {interception.destination} ({failure.reason})",
            proxy_error="upstream-error",
            close=True,
        )
    )
    return False


def _unmaskable(response: ResponseHead) -> str | None:
    """Why the body of ``response`` cannot be searched for the values (a content or transfer
    coding other than identity and chunked, although the request asked for identity)."""
    content = [c.lower() for c in field_values(response.fields, "content-encoding")]
    transfer = [c.lower() for c in field_values(response.fields, "transfer-encoding")]
    codings = [c for c in content if c != "identity"] + [c for c in transfer if c != "chunked"]
    if not codings:
        return None
    return (
        f"the origin sent a response body in coding {', '.join(codings)} although the proxy"
        " asked for identity: a value echoed in it could not be masked, so it is not relayed"
    )


def _closed_by_origin(interception: _Interception, error: BaseException) -> HttpError:
    """The origin ended the connection instead of answering: a TLS alert (a client
    certificate it requires, say), or a reset before its first answer, is a failure of the
    re-made connection, and says so."""
    cause = error.__cause__ if isinstance(error, trio.BrokenResourceError) else error
    if isinstance(cause, ssl.SSLError) or (
        isinstance(cause, ConnectionResetError) and not interception.answered
    ):
        reason = origin_failure(error, 0)
        interception.refused(RefusalKind.INTERCEPT_ORIGIN_TLS, reason)
        return HttpError(502, reason)
    return HttpError(502, "the origin closed the connection without answering")


async def _read_some(source: Buffered[Any], limit: int) -> bytes:
    if source.buffer:
        return source.take(limit)
    data: bytes = await source.stream.receive_some(limit)
    return data


async def _flush_on_pause(source: Buffered[Any], replacer: StreamingReplacer) -> bytes:
    """Wait for more of the body; what the replacer held back if it pauses first."""
    if not replacer.holding or source.buffer:
        return b""
    with trio.move_on_after(PAUSE_FLUSH_SECONDS):
        await source.fill()  # the end of the stream is found by the read that follows
        return b""
    return replacer.flush()


async def relay_masked(
    source: Buffered[Any],
    sink: trio.abc.SendStream,
    body: Body,
    count: ByteCounter,
    replacer: StreamingReplacer,
) -> None:
    """A response body relayed in its framing (chunk sizes as they came; extensions and
    trailers dropped) with ``replacer`` run over its data: a tail it holds back waits, with
    the framing after it, until the data that follows or the end of the body."""
    if body.framing is Framing.CHUNKED:
        await _relay_masked_chunked(source, sink, count, replacer)
        return
    if body.framing is Framing.NONE:
        return
    left = body.length if body.framing is Framing.LENGTH else None
    while left is None or left > 0:
        if paused := await _flush_on_pause(source, replacer):
            await sink.send_all(paused)
        data = await _read_some(source, RELAY_CHUNK if left is None else min(left, RELAY_CHUNK))
        if not data:
            if left is None:
                break
            raise StreamEnded
        count(len(data))
        if left is not None:
            left -= len(data)
        if out := replacer.feed(data):
            await sink.send_all(out)
    if rest := replacer.flush():
        await sink.send_all(rest)


async def _relay_masked_chunked(
    source: Buffered[Any],
    sink: trio.abc.SendStream,
    count: ByteCounter,
    replacer: StreamingReplacer,
) -> None:
    # What is owed to the client, in order: framing bytes, or a count of data bytes that the
    # replacer has yet to give out.
    owed: collections.deque[bytes | int] = collections.deque()

    async def give(data: bytes) -> None:
        pieces = []
        while owed:
            first = owed[0]
            if isinstance(first, bytes):
                pieces.append(first)
                owed.popleft()
                continue
            if not data:
                break
            size = min(first, len(data))
            pieces.append(data[:size])
            data = data[size:]
            if size == first:
                owed.popleft()
            else:
                owed[0] = first - size
        if data:
            raise AssertionError("the replacer gave out more than the chunks hold")
        if pieces:
            await sink.send_all(b"".join(pieces))

    try:
        while True:
            await give(await _flush_on_pause(source, replacer))
            line = await source.read_until(b"\r\n", MAX_CHUNK_LINE)
            count(len(line))
            size = parse_chunk_size(line)
            # Written anew: extensions (which could carry an echoed value) are dropped.
            owed.append(b"%x\r\n" % size)
            if size == 0:
                break
            owed.append(size)
            left = size
            while left:
                await give(await _flush_on_pause(source, replacer))
                data = await _read_some(source, min(left, RELAY_CHUNK))
                if not data:
                    raise StreamEnded
                count(len(data))
                left -= len(data)
                await give(replacer.feed(data))
            if await source.read_exactly(2) != b"\r\n":
                raise HttpError(502, "a chunk does not end with CRLF")
            count(2)
            owed.append(b"\r\n")
            await give(b"")
        await give(replacer.flush())
        await read_trailers(source, count, 502)  # dropped: they could echo a value
        owed.append(b"\r\n")
        await give(b"")
    except LineTooLong:
        raise HttpError(502, "a chunk-size or trailer line is too long") from None
