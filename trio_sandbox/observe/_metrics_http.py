"""Serving :class:`~._metrics.Metrics` over plain HTTP: ``GET /metrics``, for Prometheus.

prometheus-client renders the exposition (text 0.0.4, or OpenMetrics when the scraper asks for
it, gzipped when it accepts that); this module only routes: ``/metrics`` answers GET and HEAD,
any other path is 404, any other method 405. The gauges are read in the event loop; the
rendering runs in a worker thread, one scrape at a time: at the label bounds of
:mod:`._metrics` a render takes a tenth of a second, which the loop must not wait out.
"""

from __future__ import annotations

import gzip
import ipaddress
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, NoReturn, TypeAlias

import trio
from prometheus_client.exposition import choose_encoder, gzip_accepted

from ..mcp import BoundServer, serve_http
from ..mcp.lowlevel import serve_lifespan
from ._errors import ObserveError
from ._metrics import Metrics

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]

METRICS_PATH: Final = "/metrics"


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], *, head: bool
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def _host_allowed(host: str | None, names: frozenset[str]) -> bool:
    """Whether a request's Host names us: an address, ``localhost``, or a name in ``names``
    (the one the endpoint was told to listen on, this machine's own)."""
    if host is None:
        return True  # HTTP/1.0: no name to rebind
    if host.startswith("["):
        return _is_address(host[1:].partition("]")[0])
    name = (host.rpartition(":")[0] if ":" in host else host).lower()
    return name == "localhost" or name in names or _is_address(name)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def metrics_app(
    metrics: Metrics, names: frozenset[str] = frozenset()
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI app of ``metrics``' endpoint; ``names``: host names a request may be for
    beside addresses and ``localhost``."""
    one_render = trio.CapacityLimiter(1)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # a WebSocket hypercorn closes for us
        method = scope["method"]
        head = method == "HEAD"
        text = [(b"content-type", b"text/plain; charset=utf-8")]
        if scope["path"] != METRICS_PATH:
            await _respond(send, 404, b"not found: metrics are at /metrics\n", text, head=head)
            return
        if method not in ("GET", "HEAD"):
            allow = [*text, (b"allow", b"GET, HEAD")]
            await _respond(send, 405, b"method not allowed: use GET\n", allow, head=False)
            return
        # Header values are bytes a client chose: latin-1 reads any of them.
        headers: dict[bytes, str] = {}
        for name, value in scope["headers"]:
            headers[name.lower()] = value.decode("latin-1")
        if not _host_allowed(headers.get(b"host"), names):
            # A web page that rebinds its name to our address must not read us.
            await _respond(
                send, 421, b"metrics answer requests for an address or localhost\n", text, head=head
            )
            return
        encoder, content_type = choose_encoder(headers.get(b"accept", ""))
        compress = gzip_accepted(headers.get(b"accept-encoding", ""))
        scrape = metrics.scrape()

        def render() -> bytes:
            body = encoder(scrape)
            return gzip.compress(body, compresslevel=1) if compress else body

        body = await trio.to_thread.run_sync(render, limiter=one_render)
        reply = [(b"content-type", content_type.encode("latin-1"))]
        if compress:
            reply.append((b"content-encoding", b"gzip"))
        await _respond(send, 200, body, reply, head=head)

    return app


async def _listen_host(host: str) -> str:
    """An address for ``host``: itself when it is one, else what the name resolves to (IPv4
    first: a name such as ``localhost`` resolves to both, and IPv6 may be off)."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        pass
    else:
        return host
    try:
        found = await trio.socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as error:
        raise ObserveError(f"metrics listen host {host!r}: cannot resolve it: {error}") from None
    addresses = sorted(found, key=lambda entry: entry[0] != socket.AF_INET)
    if not addresses:
        raise ObserveError(f"metrics listen host {host!r}: it resolves to no address")
    return str(addresses[0][4][0])


async def serve_metrics(
    metrics: Metrics,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[BoundServer] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``metrics`` at ``http://host:port/metrics`` until cancelled; reports where
    (``port`` 0 picks a free one). ``host``, ``port``: see :func:`~._listen.parse_listen_address`.
    """
    address = await _listen_host(host)
    await serve_http(
        metrics_app(metrics, frozenset({host.lower(), socket.gethostname().lower()})),
        host=address,
        port=port,
        path=METRICS_PATH,
        graceful_timeout=1.0,
        task_status=task_status,
    )
