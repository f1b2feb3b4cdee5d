"""``serve_proxy``: the aggregating proxy as a service started with ``nursery.start``."""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Final, cast

import attrs
import trio

from ..mcp import (
    BoundServer,
    HttpAuth,
    HttpSettings,
    Implementation,
    McpClient,
    McpHttpApp,
    memory_transport,
    serve_http,
    serve_stdio,
    stdio_transport,
)
from ..program import VERSION
from ..redact import MIN_KNOWN_SECRET_LENGTH, KnownSecretTooShort
from ..tls import CertificateChain
from ._aggregate import ProxyServer
from ._auth import require_bearer_token
from ._client_hooks import ClientHooks, ClientOpener, opener_for_url
from ._errors import ConfigError
from ._exposed_names import check_prefixes
from ._output_guard import OutputGuard
from ._upstream import Upstream
from ._upstream_specs import (
    HttpUpstream,
    StdioUpstream,
    UpstreamSpec,
    WebSocketUpstream,
    effective_prefix,
    is_loopback_host,
)
from ._upstream_state import UpstreamStatus

if TYPE_CHECKING:
    # Imported where used: the oauth package (httpx, authlib) loads only when an upstream
    # uses OAuth.
    import httpx

    from ..oauth import OAuthClient, OAuthSettings, Tokens, TokenStore

PROXY_INFO = Implementation("trio-sandbox-proxy", VERSION)
logger = logging.getLogger("trio_sandbox.proxy")
# One request to an authorization server (metadata, a token, a registration).
_AUTHORIZATION_TIMEOUT: Final = 30.0


# Every client of a face shares one identity (the run's client bundle or token), so the bounds per
# client are bounds per face: requests per session, and on the whole face (the tool server's own
# HTTP face leaves them unbounded: its one client is this proxy, which multiplexes its clients).
FACE_SETTINGS: Final = HttpSettings(max_requests_per_session=64, max_requests_in_flight=256)


@attrs.frozen
class HttpFace:
    """Streamable HTTP (and WebSocket) for downstream clients; exactly one way to authenticate.

    ``chain``: TLS that requires client certificates from the chain's CA (mutual TLS);
    ``chain`` with ``token``: TLS without client certificates, a bearer token instead;
    ``plain=True``: plain HTTP, allowed on a loopback address only.
    """

    host: str = "127.0.0.1"
    port: int = 0
    chain: CertificateChain | None = None
    token: str | None = attrs.field(default=None, repr=False)
    plain: bool = False
    settings: HttpSettings = FACE_SETTINGS

    def __attrs_post_init__(self) -> None:
        if self.plain:
            if self.chain is not None or self.token is not None:
                raise ValueError("a plain-HTTP face takes no certificate chain or token")
            if not is_loopback_host(self.host):
                raise ValueError(f"plain HTTP is served on loopback only, not on {self.host!r}")
        elif self.chain is None:
            raise ValueError("an HTTPS face needs a certificate chain (or plain=True on loopback)")

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.chain is None:
            return None
        context = self.chain.server_ssl_context()
        if self.token is not None:
            # Token face: clients prove themselves with the token, not with a certificate.
            context.verify_mode = ssl.CERT_NONE
        return context


@attrs.frozen
class StdioFace:
    """MCP on this process's stdin/stdout, for hosts that launch the proxy."""


ProxyFace = HttpFace | StdioFace


@attrs.define(eq=False)
class ProxyHandle:
    """What :func:`serve_proxy` reports: where it listens, and its upstreams' states."""

    server: ProxyServer
    url: str | None

    @property
    def http_url(self) -> str:
        """The URL of an HTTP face (a stdio face has none)."""
        if self.url is None:
            raise RuntimeError("this proxy serves stdio, not HTTP")
        return self.url

    @property
    def upstreams(self) -> dict[str, Upstream]:
        return self.server.upstreams

    def statuses(self) -> list[UpstreamStatus]:
        """The upstreams' states, their errors redacted (an upstream's error may echo the
        credential the proxy sent it: these are printed and logged)."""
        statuses = [upstream.status for upstream in self.server.upstreams.values()]
        return [
            status
            if status.last_error is None
            else attrs.evolve(
                status, last_error=self.server.guard.redact_record_text(status.last_error)
            )
            for status in statuses
        ]


class _RedactingFilter(logging.Filter):
    """Redacts each log record's message with the proxy's guard (every known secret: tokens
    the OAuth clients obtained) before any handler writes it."""

    def __init__(self, guard: OutputGuard) -> None:
        super().__init__()
        self._guard = guard

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._guard.redact_record_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


@contextlib.contextmanager
def _logs_redacted(guard: OutputGuard, needed: bool) -> Iterator[None]:
    """While the proxy runs, what every handler of the root logger writes is redacted: a
    filter on a handler sees the records of every logger (one on a logger only its own)."""
    if not needed:
        yield
        return
    handlers = list(logging.getLogger().handlers)
    redacting = _RedactingFilter(guard)
    for handler in handlers:
        handler.addFilter(redacting)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(redacting)


def opener_for_spec(spec: UpstreamSpec, auth: HttpAuth | None = None) -> ClientOpener:
    if isinstance(spec, (HttpUpstream, WebSocketUpstream)):
        headers = spec.headers if isinstance(spec, HttpUpstream) else None
        return opener_for_url(spec.url, ssl_context=spec.ssl_context, headers=headers, auth=auth)
    if isinstance(spec, StdioUpstream):
        factory = stdio_transport(
            [spec.command, *spec.args], env=_child_env(spec.env), cwd=spec.cwd
        )
    else:
        factory = memory_transport(spec.server, name=spec.name)

    def open_client(hooks: ClientHooks) -> AbstractAsyncContextManager[McpClient]:
        return hooks.open_client(factory)

    return open_client


def _child_env(extra: Mapping[str, str]) -> dict[str, str] | None:
    # mcpServers "env" adds to the environment rather than replacing it, as MCP hosts do.
    return {**os.environ, **extra} if extra else None


async def serve_proxy(
    upstreams: Sequence[UpstreamSpec | Upstream],
    face: ProxyFace,
    *,
    list_timeout: float = 10.0,
    call_wait: float = 10.0,
    ping_interval: float = 5.0,
    reconnect_backoff_max: float = 5.0,
    page_size: int = 100,
    info: Implementation = PROXY_INFO,
    guard: OutputGuard | None = None,
    token_store: TokenStore | None = None,
    task_status: trio.TaskStatus[ProxyHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve one MCP face in front of ``upstreams`` until cancelled.

    Specs are connected (and reconnected) by the proxy itself; ready-made :class:`Upstream`
    objects are driven by their owner (the sandbox attaches and detaches its session). Reports a
    :class:`ProxyHandle` once every upstream had its first connection attempt and the face
    listens. ``guard`` redacts secrets and shortens large outputs (a fresh one by default).
    With a :class:`StdioFace` it returns when stdin ends. Stdio upstreams run in this
    service's nursery: when it ends, their process groups are stopped.

    An HTTP upstream with ``oauth`` settings gets one :class:`OAuthClient` for the proxy's
    lifetime, unattended (a login it needs is reported, never started), its tokens in
    ``token_store`` (the user's :class:`FileTokenStore` by default); every token and client
    secret it obtains is redacted wherever the proxy sends or records anything.
    """
    check_prefixes(
        (item.name, item.prefix if isinstance(item, Upstream) else effective_prefix(item))
        for item in upstreams
    )
    server = ProxyServer(
        info, page_size=page_size, list_timeout=list_timeout, guard=guard or OutputGuard()
    )
    needs_oauth = any(isinstance(item, HttpUpstream) and item.oauth for item in upstreams)
    with _logs_redacted(server.guard, needs_oauth):
        await _serve_upstreams(
            server,
            upstreams,
            face,
            needs_oauth,
            call_wait=call_wait,
            ping_interval=ping_interval,
            reconnect_backoff_max=reconnect_backoff_max,
            token_store=token_store,
            task_status=task_status,
        )


async def _serve_upstreams(
    server: ProxyServer,
    upstreams: Sequence[UpstreamSpec | Upstream],
    face: ProxyFace,
    needs_oauth: bool,
    *,
    call_wait: float,
    ping_interval: float,
    reconnect_backoff_max: float,
    token_store: TokenStore | None,
    task_status: trio.TaskStatus[ProxyHandle],
) -> None:
    async with _authorization_http(needs_oauth) as http:
        connections: list[tuple[Upstream, ClientOpener]] = []
        for item in upstreams:
            if isinstance(item, Upstream):
                upstream = item
            else:
                oauth = None
                if isinstance(item, HttpUpstream) and item.oauth is not None:
                    assert http is not None
                    oauth = _oauth_client(item, item.oauth, server.guard, http, token_store)
                upstream = Upstream(
                    item.name,
                    effective_prefix(item),
                    call_wait=call_wait,
                    ping_interval=ping_interval,
                    protocol_version=item.protocol_version,
                    redact=item.redact,
                    oauth=oauth,
                )
                connections.append((upstream, opener_for_spec(item, oauth)))
            server.add_upstream(upstream)
        await _serve(
            server,
            connections,
            face,
            reconnect_backoff_max=reconnect_backoff_max,
            task_status=task_status,
        )


@asynccontextmanager
async def _authorization_http(needed: bool) -> AsyncIterator[httpx.AsyncClient | None]:
    """The proxy's one HTTP client for authorization servers, when an upstream uses OAuth."""
    if not needed:
        yield None
        return
    import httpx

    # No redirects followed: a token request answered by a redirect is an error, not a detour.
    async with httpx.AsyncClient(timeout=_AUTHORIZATION_TIMEOUT, follow_redirects=False) as http:
        yield http


def _oauth_client(
    spec: HttpUpstream,
    settings: OAuthSettings,
    guard: OutputGuard,
    http: httpx.AsyncClient,
    store: TokenStore | None,
) -> OAuthClient:
    def redact(value: str) -> None:
        try:
            guard.add_known_secret(value, f"oauth:{spec.name}", source=None)
        except KnownSecretTooShort:
            # Too short to find in text without hiding ordinary words: it could not be kept out
            # of what the proxy says, so it is not used (a stored token too: log in again).
            from ..oauth import OAuthError

            raise OAuthError(
                f"upstream {spec.name!r}: an OAuth secret too short to be kept out of output;"
                f" log in again (trio-sandbox auth login {spec.name})"
            ) from None

    if settings.client_secret is not None:
        if len(settings.client_secret) < MIN_KNOWN_SECRET_LENGTH:
            raise ConfigError(
                f"upstream {spec.name!r}: the OAuth client secret is too short to be kept out of"
                f" output (at least {MIN_KNOWN_SECRET_LENGTH} characters)"
            )
        redact(settings.client_secret)
    from ..oauth import FileTokenStore, OAuthClient

    seeing = RedactingStore(store if store is not None else FileTokenStore(lock_wait=0), redact)
    return OAuthClient(
        spec.name,
        spec.url,
        settings,
        seeing,
        http,
        user_agent=None,
        on_secret=redact,
    )


@attrs.define(eq=False)
class RedactingStore:
    """The token store as the proxy's OAuth clients see it: every secret it hands out is
    redacted first, whoever stored it (``auth login`` in another process, while this proxy
    runs, stores tokens this proxy never obtained itself). Writes never wait for another
    process's lock (the event loop serves every upstream): tokens that cannot be written now
    are kept here, handed out, and written at a later use."""

    store: TokenStore
    redact: Callable[[str], None]
    _seen: set[str] = attrs.field(factory=set, repr=False)
    # name -> (tokens, what they may replace or _ANY for a plain save), not yet written.
    _pending: dict[str, tuple[Tokens, object]] = attrs.field(factory=dict, repr=False)

    def load(self, name: str) -> Tokens | None:
        pending = self._flush(name)
        tokens = pending if pending is not None else self.store.load(name)
        if tokens is not None:
            for value in (tokens.access_token, tokens.refresh_token, tokens.client_secret):
                if value and value not in self._seen:
                    self.redact(value)
                    self._seen.add(value)
        return tokens

    def save(self, name: str, tokens: Tokens) -> None:
        self._pending[name] = (tokens, _ANY)
        self._flush(name, announce=True)

    def replace(self, name: str, tokens: Tokens, expected: Tokens | None) -> Tokens | None:
        self._pending[name] = (tokens, expected)
        pending = self._flush(name, announce=True)
        return pending if pending is not None else self.store.load(name)

    def delete(self, name: str) -> bool:
        self._pending.pop(name, None)
        return self.store.delete(name)

    def _flush(self, name: str, *, announce: bool = False) -> Tokens | None:
        """Writes what is pending for ``name``; returns it if it still waits for the lock."""
        from ..oauth import TokenStoreBusy

        if name not in self._pending:
            return None
        tokens, expected = self._pending[name]
        try:
            if expected is _ANY:
                self.store.save(name, tokens)
            else:
                kept = self.store.replace(name, tokens, cast("Tokens | None", expected))
                if kept is not None and kept != tokens:
                    logger.info("upstream %r: kept the tokens a login stored meanwhile", name)
        except TokenStoreBusy:
            if announce:
                logger.warning(
                    "upstream %r: the token store is locked; tokens kept in memory", name
                )
            return tokens
        del self._pending[name]
        return None


_ANY: Final = object()


async def _serve(
    server: ProxyServer,
    connections: Sequence[tuple[Upstream, ClientOpener]],
    face: ProxyFace,
    *,
    reconnect_backoff_max: float,
    task_status: trio.TaskStatus[ProxyHandle],
) -> None:
    async with trio.open_nursery() as nursery:
        async with trio.open_nursery() as first_attempts:
            for upstream, opener in connections:
                connect = partial(
                    upstream.serve_connection, opener, backoff_max=reconnect_backoff_max
                )
                first_attempts.start_soon(nursery.start, connect)
        await server.refresh()
        nursery.start_soon(server.serve_list_changes)
        if isinstance(face, StdioFace):
            task_status.started(ProxyHandle(server, None))
            await serve_stdio(server.mcp)
            nursery.cancel_scope.cancel()
            return
        app: Any = McpHttpApp(server.mcp, face.settings)
        if face.token is not None:
            app = require_bearer_token(app, face.token)
        bound: BoundServer = await nursery.start(
            partial(
                serve_http,
                app,
                host=face.host,
                port=face.port,
                ssl_context=face.ssl_context(),
                path=face.settings.path,
            )
        )
        task_status.started(ProxyHandle(server, bound.url))
