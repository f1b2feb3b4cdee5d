"""The HTTP/1.1 front end: CONNECT tunnels and absolute-form requests (``GET http://h/p``).

One client connection carries requests until it closes or turns into a tunnel. Every request is
judged on its own (keep-alive does not carry a decision over). An absolute-form request goes out
in origin form with the hop-by-hop and Proxy-* fields removed, its body and the response's body
relayed as they come (Content-Length, chunked, or until close), never buffered whole. The
upstream connection is kept for the next request to the same destination.
"""

from __future__ import annotations

import select
from typing import Final

import attrs
import trio

from ..concurrency import BufferedSocket, LineTooLong, StreamEnded
from ._client_hello import is_tls_handshake
from ._dial import Dialer, OutboundConnection
from ._errors import DestinationError, HttpError, RefusalQueryError
from ._events import logger
from ._http_head import (
    MAX_HEAD_BYTES,
    Body,
    Framing,
    RequestHead,
    end_to_end,
    parse_request_head,
    parse_response_head,
    request_body,
    response_body,
    write_head,
)
from ._http_relay import BROKEN, answer_and_close, error_response, refusal_response, relay_body
from ._intercept import intercept_tunnel
from ._names import parse_port, split_host_port
from ._policy import Allowed, Refused
from ._refusals import REFUSALS_PATH, parse_refusals_query, refusals_answer
from ._throttle import Throttle

CONNECTION_ESTABLISHED: Final = b"HTTP/1.1 200 Connection established\r\n\r\n"
_BROKEN: Final = BROKEN


@attrs.frozen
class AbsoluteTarget:
    host: str  # as written, brackets kept
    port: int
    authority: str  # the Host field to send
    path: str  # origin form: path and query


def parse_absolute_target(target: str) -> AbsoluteTarget:
    scheme, separator, rest = target.partition("://")
    if not separator:
        if target.startswith("/"):
            raise HttpError(
                400, "this is a proxy: send the whole URL (GET http://host/path) or CONNECT"
            )
        raise HttpError(400, f"malformed request target {target[:80]!r}")
    if scheme.lower() == "https":
        raise HttpError(400, "https:// goes through a CONNECT tunnel (set HTTPS_PROXY)")
    if scheme.lower() != "http":
        raise HttpError(400, f"only http:// URLs are proxied, not {scheme[:20]!r}")
    cut = min((index for index in map(rest.find, "/?#") if index >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:].partition("#")[0]
    if "@" in authority:
        raise HttpError(400, "credentials in the URL (user@host) are not forwarded")
    host, port = _host_and_port(authority, default=80)
    return AbsoluteTarget(host, port, authority, path if path.startswith("/") else "/" + path)


def parse_connect_target(target: str) -> tuple[str, int]:
    host, port = _host_and_port(target, default=None)
    return host, port


def _host_and_port(authority: str, *, default: int | None) -> tuple[str, int]:
    try:
        host, port_text = split_host_port(authority, bare_ipv6=False)
        if not port_text:
            if default is None:
                raise DestinationError(authority, "CONNECT needs host:port")
            return host, default
        return host, parse_port(port_text, authority)
    except DestinationError as error:
        raise HttpError(400, str(error)) from None


def _still_open(upstream: OutboundConnection) -> bool:
    """Whether a kept upstream connection can carry another request: an idle connection has
    nothing to read, so readable means closed (or unsolicited bytes): not reusable."""
    if upstream.socket.buffer:
        return False
    poller = select.poll()
    poller.register(upstream.socket.stream.socket.fileno(), select.POLLIN | select.POLLRDHUP)
    return not poller.poll(0)


@attrs.define(eq=False)
class _Exchange:
    """How one forwarded request went, written by its two tasks."""

    request_done: bool = False
    head_sent: bool = False
    response_done: bool = False
    upstream_closes: bool = False  # the upstream connection ends with this response
    client_closes: bool = False  # and so does the client's
    error: HttpError | None = None  # what to answer if it failed before the response head

    @property
    def keep_client(self) -> bool:
        return self.request_done and self.response_done and not self.client_closes

    @property
    def keep_upstream(self) -> bool:
        return self.request_done and self.response_done and not self.upstream_closes


@attrs.define(eq=False)
class HttpFrontEnd:
    dialer: Dialer
    handshake_timeout: float
    idle_timeout: float
    zero_copy: bool
    throttle: Throttle

    async def serve(self, client: BufferedSocket, accepted_at: float) -> None:
        """Requests until the client closes, a request says close, or one becomes a tunnel."""
        upstream: OutboundConnection | None = None
        head_deadline: float | None = accepted_at + self.handshake_timeout
        first_byte_deadline = accepted_at + self.handshake_timeout
        try:
            while True:
                try:
                    head = await self._read_head(client, first_byte_deadline, head_deadline)
                    if head is None:
                        return
                    if head_deadline is None:  # the connection's first request paid at accept
                        await self.throttle.take()
                    if head.method == "CONNECT":
                        if upstream is not None:
                            await upstream.aclose()
                            upstream = None
                        await self._tunnel(client, head)
                        return
                    keep, upstream = await self._forward(client, head, upstream)
                except HttpError as error:
                    logger.info("refused a malformed request: %s %s", error.status, error.reason)
                    await answer_and_close(
                        client,
                        error_response(
                            error.status, error.reason, proxy_error="bad-request", close=True
                        ),
                    )
                    return
                if not keep:
                    return
                first_byte_deadline = trio.current_time() + self.idle_timeout
                head_deadline = None
        finally:
            if upstream is not None:
                await upstream.aclose()

    async def _read_head(
        self, client: BufferedSocket, first_byte_deadline: float, head_deadline: float | None
    ) -> RequestHead | None:
        """The next request head; None if the client closed or stayed idle between requests."""
        with trio.move_on_at(first_byte_deadline) as idle:
            while not client.buffer.lstrip(b"\r\n"):
                client.buffer.clear()  # CRLFs between requests are allowed (RFC 9112 2.2)
                if not await client.fill():
                    return None
        if idle.cancelled_caught:
            if head_deadline is None:
                return None  # an idle keep-alive connection: close it quietly
            raise HttpError(408, f"no request within {self.handshake_timeout:g} s")
        del client.buffer[: len(client.buffer) - len(client.buffer.lstrip(b"\r\n"))]
        deadline = trio.current_time() + self.handshake_timeout
        if head_deadline is not None:
            deadline = min(deadline, head_deadline)
        with trio.move_on_at(deadline):
            try:
                return parse_request_head(await client.read_until(b"\r\n\r\n", MAX_HEAD_BYTES))
            except LineTooLong:
                raise HttpError(431, f"request head larger than {MAX_HEAD_BYTES} bytes") from None
            except StreamEnded:
                return None
        raise HttpError(408, f"the request head did not arrive within {self.handshake_timeout:g} s")

    async def _tunnel(self, client: BufferedSocket, head: RequestHead) -> None:
        host, port = parse_connect_target(head.target)
        guard = self.dialer.guard
        if guard is not None:
            found = guard.request(f"{host}:{port}", head.target, head.fields, cleartext=False)
            if found is not None:
                self.dialer.refuse("connect", found)
                await answer_and_close(client, refusal_response(found, close=True))
                return
        decision = self.dialer.judge("connect", host, port)
        outcome = (
            decision
            if isinstance(decision, Refused)
            else await self.dialer.open("connect", decision)
        )
        if isinstance(outcome, Refused):
            await answer_and_close(client, refusal_response(outcome, close=True))
            return
        async with outcome:
            await client.stream.send_all(CONNECTION_ESTABLISHED)
            scoped = () if guard is None else guard.injection.scoped(outcome.destination)
            if scoped:
                await intercept_tunnel(
                    client,
                    outcome,
                    self.dialer,
                    "connect",
                    scoped,
                    handshake_timeout=self.handshake_timeout,
                    idle_timeout=self.idle_timeout,
                )
                return
            refused = await self.dialer.screen_tunnel("connect", client, outcome)
            if refused is not None:
                await refuse_in_tunnel(client, refused)
                return
            await outcome.tunnel(client, zero_copy=self.zero_copy)

    async def _forward(
        self, client: BufferedSocket, head: RequestHead, upstream: OutboundConnection | None
    ) -> tuple[bool, OutboundConnection | None]:
        """One absolute-form request; whether the client connection goes on, and the upstream
        connection to keep for the next request."""
        if head.method == "GET" and head.target.partition("?")[0] == REFUSALS_PATH:
            try:
                since = parse_refusals_query(head.target)
            except RefusalQueryError as error:
                raise HttpError(400, str(error)) from None
            refusals = self.dialer.events.stats.refusals_since(since)
            # A command just ended: the host's counts are brought up to date with its answer.
            self.dialer.events.publish()
            await client.stream.send_all(refusals_answer(refusals))
            return not head.wants_close and request_body(head).framing is Framing.NONE, upstream
        target = parse_absolute_target(head.target)
        body = request_body(head)
        # A refused request's body is never read, so the connection cannot go on after one.
        keep_after_refusal = body.framing is Framing.NONE and not head.wants_close
        guard = self.dialer.guard
        if guard is not None:
            where = f"{target.host}:{target.port}"
            found = guard.request(where, head.target, head.fields, cleartext=True)
            if found is not None:
                self.dialer.refuse("http", found)
                return await _refuse(client, found, keep=keep_after_refusal), upstream
        decision = self.dialer.judge("http", target.host, target.port)
        if isinstance(decision, Refused):
            return await _refuse(client, decision, keep=keep_after_refusal), upstream
        opened = await self._outbound_for(decision, upstream)
        if isinstance(opened, Refused):
            return await _refuse(client, opened, keep=keep_after_refusal), None
        upstream = opened
        try:
            outcome = await self._exchange(client, head, target, body, upstream)
        except BaseException:
            await upstream.aclose()  # (cancelled: its record all the same)
            raise
        upstream.end_use()  # this request's record: its response ended (or failed)
        if outcome.error is not None and not outcome.head_sent:
            failure = error_response(
                outcome.error.status,
                f"failed {upstream.destination} ({outcome.error.reason})",
                proxy_error="upstream-error" if outcome.error.status == 502 else "bad-request",
                close=True,
            )
            await answer_and_close(client, failure)
        if not outcome.keep_upstream:
            await upstream.aclose()
            return outcome.keep_client, None
        return outcome.keep_client, upstream

    async def _outbound_for(
        self, allowed: Allowed, kept: OutboundConnection | None
    ) -> OutboundConnection | Refused:
        if kept is not None:
            if kept.destination == allowed.destination and _still_open(kept):
                self.dialer.reuse("http", kept)
                return kept
            await kept.aclose()
        return await self.dialer.open("http", allowed)

    async def _exchange(
        self,
        client: BufferedSocket,
        head: RequestHead,
        target: AbsoluteTarget,
        body: Body,
        upstream: OutboundConnection,
    ) -> _Exchange:
        state = _Exchange()
        request_head = write_head(
            f"{head.method} {target.path} {head.version}",
            (("Host", target.authority), *end_to_end(head.fields)),
        )

        async def send_request() -> None:
            try:
                await upstream.socket.stream.send_all(request_head)
                upstream.count_sent(len(request_head))
                await relay_body(
                    client, upstream.socket.stream, body, upstream.count_sent, self.zero_copy
                )
            except HttpError as error:  # the client's chunked body is malformed
                state.error = error
                nursery.cancel_scope.cancel()
            except _BROKEN:
                # An upstream may answer early and stop reading (413, 401): its response,
                # still being read by the other task, is what the client gets.
                pass
            else:
                state.request_done = True

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_request)
            await self._relay_response(client, head, upstream, state)
            # A complete response ends the exchange even if the request body is not all sent.
            nursery.cancel_scope.cancel()
        return state

    async def _relay_response(
        self,
        client: BufferedSocket,
        head: RequestHead,
        upstream: OutboundConnection,
        state: _Exchange,
    ) -> None:
        source = upstream.socket
        try:
            while True:
                raw = await source.read_until(b"\r\n\r\n", MAX_HEAD_BYTES)
                upstream.count_received(len(raw))
                response = parse_response_head(raw)
                if response.status == 101:
                    raise HttpError(502, "the upstream switched protocols, which is not proxied")
                if response.status >= 200:
                    break
                # Interim responses (100 Continue, 103 Early Hints) go to the client as they are.
                interim = f"HTTP/1.1 {response.status} {response.reason}"
                await client.stream.send_all(write_head(interim, end_to_end(response.fields)))
            body = response_body(response, head.method)
        except LineTooLong:
            state.error = HttpError(502, f"response head larger than {MAX_HEAD_BYTES} bytes")
            return
        except HttpError as error:
            state.error = error
            return
        except _BROKEN:
            state.error = HttpError(502, "the upstream closed the connection without answering")
            return
        state.upstream_closes = response.closes or body.framing is Framing.UNTIL_CLOSE
        state.client_closes = state.upstream_closes or head.wants_close
        fields = end_to_end(response.fields)
        if state.client_closes:
            fields = (*fields, ("Connection", "close"))
        response_head = write_head(f"HTTP/1.1 {response.status} {response.reason}", fields)
        try:
            await client.stream.send_all(response_head)
            state.head_sent = True
            await relay_body(source, client.stream, body, upstream.count_received, self.zero_copy)
        except (HttpError, *_BROKEN):
            return  # part of the response went out: only closing both ends can tell the client
        state.response_done = True


async def refuse_in_tunnel(client: BufferedSocket, refusal: Refused) -> None:
    """A refusal after the tunnel was granted: a client that spoke HTTP in it gets the 403 in
    HTTP; anything else (TLS, another protocol) only sees the tunnel close."""
    if not is_tls_handshake(bytes(client.buffer[:2])) and b"HTTP/1." in client.buffer:
        await answer_and_close(client, refusal_response(refusal, close=True))


async def _refuse(client: BufferedSocket, refusal: Refused, *, keep: bool) -> bool:
    """Answer a refused request; whether the connection goes on."""
    response = refusal_response(refusal, close=not keep)
    if keep:
        await client.stream.send_all(response)
    else:
        await answer_and_close(client, response)
    return keep
