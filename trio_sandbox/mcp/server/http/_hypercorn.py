"""Serving an ASGI app with hypercorn under Trio: in-memory TLS, the client's certificate, and a
bounded graceful stop.

The only module of the package that imports hypercorn. hypercorn never shows the app the peer's
certificate, so the server's ``SSLContext`` makes its TLS objects record it: the handshake runs in
the connection's own task (hypercorn's ``TCPServer.run``), which then spawns every request of the
connection, so a context variable set when the handshake completes is what each request of that
connection reads, and nothing else's. The app gets it as a :class:`ClientIdentity` in its scope.
On a face that requires client certificates a request whose certificate was not seen is refused
(500), never served as nobody's.
"""

from __future__ import annotations

import contextvars
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import NoReturn

import attrs
import hypercorn.config
import hypercorn.trio
import trio

from ...protocol._jsonrpc import MAX_MESSAGE_BYTES
from .._identity import ClientIdentity, set_scope_identity
from ._app import McpHttpApp
from ._asgi import Receive, Scope, Send, send_plain

logger = logging.getLogger("trio_sandbox.mcp")

# The verified client certificate (DER) of the TLS connection whose task this is.
_peer_certificate: contextvars.ContextVar[bytes | None] = contextvars.ContextVar(
    "trio_sandbox_peer_certificate", default=None
)


class _PeerRecordingSSLObject(ssl.SSLObject):
    """A server-side TLS object that, once its handshake completes, records the client's
    verified certificate for the task that ran the handshake (and the tasks it spawns)."""

    def do_handshake(self) -> None:
        super().do_handshake()
        if self.server_side:
            _peer_certificate.set(self.getpeercert(binary_form=True))


def _with_peer_identity(
    app: Callable[[Scope, Receive, Send], Awaitable[None]], *, required: bool
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """``app``, its scopes tagged with the identity of the connection's client certificate."""

    async def tagged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            der = _peer_certificate.get()
            if der:
                set_scope_identity(scope, ClientIdentity.of_certificate(der))
            elif required:
                logger.error("a request came without the client certificate its TLS verified")
                if scope["type"] == "http":
                    await send_plain(send, 500, b"")
                else:
                    await send({"type": "websocket.close", "code": 1011})
                return
        await app(scope, receive, send)

    return tagged


class _HypercornConfig(hypercorn.config.Config):
    """A hypercorn Config serving an in-memory SSLContext (hypercorn itself wants file paths)."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__()
        self._ssl_context = ssl_context
        # hypercorn waits 60 s for a silent peer's handshake; it need not hold a slot that long.
        self.ssl_handshake_timeout = 10.0
        # An idle connection closes after this; so does one whose request head trickles in (the
        # timer stops only once a whole head has arrived): a slow sender holds no slot for long.
        self.keep_alive_timeout = 5.0

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
        app.settings.max_body_bytes if isinstance(app, McpHttpApp) else MAX_MESSAGE_BYTES
    )
    if ssl_context is not None:
        config.alpn_protocols = ["http/1.1"]
    endpoint = path or (app.settings.path if isinstance(app, McpHttpApp) else "/")
    served = app
    if ssl_context is not None and ssl_context.verify_mode is not ssl.CERT_NONE:
        # The context is this server's: its TLS objects record the client's certificate.
        ssl_context.sslobject_class = _PeerRecordingSSLObject
        served = _with_peer_identity(app, required=ssl_context.verify_mode is ssl.CERT_REQUIRED)
    shutdown = trio.Event()
    # Shielded only once it serves, so that a graceful shutdown can run; cancelling a start
    # (hypercorn binding its sockets) simply stops it.
    server_scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[list[str]]) -> None:
        with server_scope:
            await hypercorn.trio.serve(
                served,  # type: ignore[arg-type]
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
