"""One upstream MCP server as the proxy sees it: a client session, its listings and its state.

An upstream either connects itself from its spec (:meth:`Upstream.serve_connection`, reconnecting
with backoff whenever the session breaks, and pinging it now and then so that a dead server shows
in the statuses before anyone calls it) or is driven from outside with :meth:`Upstream.attach` and
:meth:`Upstream.detach` (the sandbox does this across respawns).

Calls wait a bounded time for a session. A call the upstream did not serve fails with
:class:`UpstreamUnavailable`, whose :class:`Unserved` says why, decided here where it is known: a
call in flight when its session went away may or may not have run, so it is never retried behind
the caller's back; a call that found no session was not run. The one retry is for a session the
server forgot (HTTP 404): such a request reached no handler, so the proxy opens a new session and
sends it once more. The tool result a client then gets is the upstream's own
(:attr:`Upstream.unserved_result`: the sandbox words it as a restart, and marks it).

An upstream may stand for one upstream per downstream session (:attr:`Upstream.route`, the
sandbox's ephemeral mode): each request is forwarded to its session's.

What an upstream asks while serving a downstream request (sampling, elicitation, roots, log
messages) goes back to that request. Over HTTP the upstream's messages arrive in the calling task,
so a context variable names the request; over message channels (stdio, WebSocket, memory) they
arrive in the reader task, and they go to the upstream's only call in flight when there is exactly
one.
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeVar

import attrs
import trio

from ..concurrency import AsyncValue, collapse_exception_group
from ..mcp import (
    INVALID_REQUEST,
    CallToolResult,
    InputRequest,
    JsonObject,
    McpClient,
    McpConnectionError,
    McpError,
    McpSessionExpired,
    Notification,
    RequestContext,
    Resource,
    ResourceTemplate,
)
from ..mcp.lowlevel import META_LOG_LEVEL, META_RESERVED_PREFIX
from ._client_hooks import ClientHooks, ClientOpener
from ._errors import Unserved, UpstreamNeedsLogin, UpstreamUnavailable
from ._upstream_state import Listing, UpstreamState, UpstreamStatus

if TYPE_CHECKING:
    # Imported where used: the oauth package (httpx, authlib) loads only for an upstream
    # that uses it.
    from ..oauth import LoginRequired, OAuthClient, OAuthError

logger = logging.getLogger("trio_sandbox.proxy")

T = TypeVar("T")

# Result members the stateless era adds; the face adds its own for its own clients.
_ERA_RESULT_KEYS: Final = ("resultType", "ttlMs", "cacheScope")


@attrs.define(eq=False)
class _DownstreamCall:
    """The downstream request an upstream call serves: where its questions and logs go."""

    ctx: RequestContext
    asks: int = 0


# Set around each upstream call; HTTP transports deliver the upstream's messages in that task.
_current_call: contextvars.ContextVar[_DownstreamCall | None] = contextvars.ContextVar(
    "trio_sandbox_proxy_current_call", default=None
)


@attrs.define(eq=False)
class _Attachment:
    client: McpClient
    # The calls in flight on this session, cancelled when it goes away.
    calls: dict[trio.CancelScope, _DownstreamCall | None] = attrs.field(factory=dict)
    lost_reason: str | None = None
    # Set once, when a call or a ping finds this session broken.
    broken: trio.Event = attrs.field(factory=trio.Event)


# Picks the upstream that serves a request: its downstream client's, or None for this one.
SessionRouter = Callable[[RequestContext], Awaitable["Upstream | None"]]
# Names, for a request, the routed upstream that serves it (the same string for every request it
# serves), or None for this one: whose values the request's arguments may get back.
RouteKey = Callable[[RequestContext], "str | None"]


def unserved_tool_error(error: UpstreamUnavailable) -> CallToolResult:
    """The tool result of a call an upstream did not serve: an error that names it, and why."""
    return CallToolResult.error(str(error))


@attrs.define(eq=False)
class Upstream:
    name: str
    prefix: str
    # How long a call waits for a session before failing (a respawning sandbox, a reconnect).
    call_wait: float = 10.0
    # A self-connected upstream's liveness check when idle (a ping, or discover when stateless).
    ping_interval: float = 5.0
    protocol_version: str | None = None
    # False: the rules do not run on what it sends (known secrets are redacted all the same).
    redact: bool = True
    # Told (synchronously) when the listing may have changed; the proxy refreshes in its own task.
    on_listing_changed: Callable[[], None] | None = None
    # Where upstream notifications not tied to a request go (resources/updated, stray logs).
    on_unrelated_notification: Callable[[Notification], Awaitable[None]] | None = None
    state: UpstreamState = UpstreamState.CONNECTING
    last_error: str | None = None
    connected_since: float | None = None
    listing: Listing | None = None
    listing_stale: bool = True
    collisions: tuple[str, ...] = ()
    # One upstream per downstream session: where each request goes (None: to this one). It may
    # raise UpstreamUnavailable to refuse a request.
    route: SessionRouter | None = None
    # With ``route``: which routed upstream a request goes to, as a source of values.
    route_key: RouteKey | None = None
    # ``_meta`` keys that are the proxy's business (the router's), never forwarded upstream.
    consumed_meta_keys: frozenset[str] = frozenset()
    # The tool result a client gets for a call this upstream did not serve.
    unserved_result: Callable[[UpstreamUnavailable], CallToolResult] = unserved_tool_error
    # Calls forwarded here and not yet answered (waiting for a session included).
    calls_in_flight: int = 0
    # Which generation of a sandbox serves now (the sandbox sets it; None for other upstreams).
    generation: int | None = None
    # An OAuth upstream's client: it outlives every session (a reconnect or a failed ping keeps
    # its tokens), and its status shows in this upstream's.
    oauth: OAuthClient | None = None
    # Set when connecting found that a person must log in: calls fail at once, saying how.
    login_required: LoginRequired | None = None
    # Set when connecting failed at the authorization server (a refresh that failed).
    auth_failure: OAuthError | None = None
    # The current session: calls wait on it, and whoever connects the upstream watches it.
    _attachment: AsyncValue[_Attachment | None] = attrs.field(factory=lambda: AsyncValue(None))

    @property
    def status(self) -> UpstreamStatus:
        tools = len(self.listing.tools) if self.listing is not None else 0
        client = self.client
        return UpstreamStatus(
            self.name,
            self.state,
            self.last_error,
            self.connected_since,
            tools,
            client.protocol_version if client is not None else None,
            self.collisions,
            self.oauth.status() if self.oauth is not None else None,
        )

    def source_key(self, ctx: RequestContext | None) -> str:
        """Who placeholders of this upstream's values are restored towards when it serves
        ``ctx``'s request: the upstream itself, by name; with one upstream per client, that
        client's (what one client's sandbox printed is never restored into another's)."""
        if self.route_key is not None and ctx is not None:
            key = self.route_key(ctx)
            if key is not None:
                return f"{self.name} {key}"
        return self.name

    @property
    def client(self) -> McpClient | None:
        attachment = self._attachment.value
        return attachment.client if attachment is not None else None

    @property
    def hooks(self) -> ClientHooks:
        return ClientHooks(self._notification, self._answer, self.protocol_version)

    def _login_required_in(self, exc: BaseException) -> LoginRequired | None:
        # Only an OAuth upstream's errors are looked into (and only it loads the oauth package).
        return login_required_in(exc) if self.oauth is not None else None

    def _oauth_error_in(self, exc: BaseException) -> OAuthError | None:
        return oauth_error_in(exc) if self.oauth is not None else None

    # --- driven from outside ------------------------------------------------------------------

    def attach(self, client: McpClient) -> None:
        """Route calls to ``client`` from now on."""
        self.state = UpstreamState.CONNECTED
        self.last_error = None
        self.login_required = None
        self.auth_failure = None
        self.connected_since = trio.current_time()
        self.listing_stale = True
        self._attachment.value = _Attachment(client)
        if self.on_listing_changed is not None:
            self.on_listing_changed()

    def detach(self, reason: str) -> None:
        """The session is gone: fail the calls in flight on it, and make new calls wait."""
        attachment = self._attachment.value
        self.state = UpstreamState.ERROR
        self.last_error = reason
        self.connected_since = None
        self._attachment.value = None
        if attachment is not None:
            attachment.lost_reason = reason
            for scope in attachment.calls:
                scope.cancel()

    def report_broken(self, reason: str) -> None:
        """A call found the session broken: ask whoever connects it to start over."""
        self.last_error = reason
        attachment = self._attachment.value
        if attachment is not None:
            attachment.broken.set()

    async def wait_broken(self) -> None:
        """Until the current session (or, detached, the next one) is found broken."""
        attachment = await self._attachment.wait_value(_attached)
        assert attachment is not None
        await attachment.broken.wait()

    # --- self-connecting ----------------------------------------------------------------------

    async def serve_connection(
        self,
        open_client: ClientOpener,
        *,
        backoff: float = 0.1,
        backoff_max: float = 5.0,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Keep a session open, reconnecting with backoff; reports started after the first try.

        Logs one line when the upstream goes down and one when it is back, not one per retry.
        """
        delay = backoff
        reported = False
        down = False
        while True:
            # A server that never answers its handshake must not hold up the proxy's start:
            # connecting is bounded by call_wait; the session itself is not.
            with trio.move_on_after(self.call_wait) as connecting:
                try:
                    async with open_client(self.hooks) as client:
                        connecting.deadline = math.inf
                        self.attach(client)
                        if down:
                            logger.warning("upstream %r is back", self.name)
                            down = False
                        delay = backoff
                        await self.refresh_listing(limit=self.call_wait)
                        if not reported:
                            reported = True
                            task_status.started()
                        await self._watch(client)
                        self.detach(self.last_error or "the session broke")
                except Exception as exc:
                    # Whatever an upstream does, the proxy stays up: record it, try again later
                    # (an upstream that needs a login too: the login may come meanwhile, and
                    # the next attempt reads the tokens it stored).
                    login = self._login_required_in(exc)
                    self.login_required = login
                    self.auth_failure = self._oauth_error_in(exc) if login is None else None
                    if login is None:
                        self.detach(_describe(exc))
                    else:
                        self.detach(UpstreamNeedsLogin(self.name, login.reason).reason)
            if connecting.cancelled_caught:
                self.detach(f"no answer to the handshake within {self.call_wait:g} s")
            if not down:
                logger.warning("upstream %r is down: %s; reconnecting", self.name, self.last_error)
                down = True
            else:
                logger.debug("upstream %r: still down: %s", self.name, self.last_error)
            if not reported:
                reported = True
                task_status.started()
            await trio.sleep(delay)
            delay = min(delay * 2, backoff_max)
            self.state = UpstreamState.CONNECTING

    async def _watch(self, client: McpClient) -> None:
        """Return once the session is broken: reported by a call, or found by an idle ping."""
        attachment = self._attachment.value
        if attachment is None or attachment.client is not client:
            return
        while not attachment.broken.is_set():
            with trio.move_on_after(self.ping_interval):
                await attachment.broken.wait()
                return
            with trio.move_on_after(self.call_wait) as deadline:
                try:
                    await client.ping()
                except McpConnectionError as exc:
                    self.report_broken(f"ping failed: {exc}")
                except McpError:
                    pass  # it answered; it just does not like ping
            if deadline.cancelled_caught:
                self.report_broken(f"ping got no answer within {self.call_wait:g} s")

    # --- what the upstream sends us -----------------------------------------------------------

    def _related_call(self) -> _DownstreamCall | None:
        call = _current_call.get()
        if call is not None:
            return call
        attachment = self._attachment.value
        if attachment is not None:
            in_flight = [c for c in attachment.calls.values() if c is not None]
            if len(in_flight) == 1:
                return in_flight[0]
        return None

    async def _notification(self, note: Notification) -> None:
        # Runs in the transport's reader task for message channels: it must not wait on the
        # upstream itself, so listings are refreshed by the proxy's own task.
        if note.method.endswith("/list_changed"):
            self.listing_stale = True
            if self.on_listing_changed is not None:
                self.on_listing_changed()
            return
        if note.method == "notifications/message":
            call = self._related_call()
            params = note.params or {}
            if call is not None:
                level = params.get("level")
                logger_name = params.get("logger")
                await call.ctx.log(
                    level if isinstance(level, str) else "info",
                    params.get("data"),
                    logger_name if isinstance(logger_name, str) else None,
                )
                return
        if self.on_unrelated_notification is not None:
            await self.on_unrelated_notification(note)

    async def _answer(self, method: str, params: JsonObject) -> JsonObject:
        """Relay a question of the upstream (sampling, elicitation, roots) to the downstream."""
        call = self._related_call()
        if call is None:
            raise McpError(
                INVALID_REQUEST,
                f"the proxy has no downstream request of upstream {self.name!r} to ask {method}",
            )
        key = f"{self.name}-{call.asks}"
        call.asks += 1
        answers = await call.ctx.ask({key: InputRequest(method, params)})
        return answers[key]

    # --- using the session --------------------------------------------------------------------

    async def _wait_for_session(self, previous: _Attachment | None) -> _Attachment:
        def usable(attachment: _Attachment | None) -> bool:
            # A session a call has found broken is not used again: its successor is waited
            # for (a call right after another lost its session would be lost on it too).
            return (
                attachment is not None
                and attachment is not previous
                and not attachment.broken.is_set()
            )

        attachment = self._attachment.value
        if usable(attachment):
            assert attachment is not None
            return attachment  # the usual case, without a timeout scope
        if self.login_required is not None:
            # No session will come before a person logs in: say so now, not after call_wait.
            raise UpstreamNeedsLogin(self.name, self.login_required.reason)
        if self.auth_failure is not None:
            # Nor before the authorization server answers again (its retry is backed off).
            raise UpstreamUnavailable(self.name, str(self.auth_failure), Unserved.REFUSED)
        with trio.move_on_after(self.call_wait):
            attachment = await self._attachment.wait_value(usable)
            assert attachment is not None
            return attachment
        raise UpstreamUnavailable(
            self.name, self.last_error or "not connected", Unserved.NO_SESSION
        )

    async def _with_session(
        self,
        operation: Callable[[McpClient], Awaitable[T]],
        call: _DownstreamCall | None = None,
    ) -> T:
        """Run ``operation`` on the session; a session the server forgot (404) is renewed and
        the operation retried once."""
        attachment = await self._wait_for_session(None)
        try:
            return await self._on(attachment, operation, call)
        except McpSessionExpired as exc:
            self.report_broken(str(exc))
            logger.info("upstream %r forgot its session; retrying on a new one", self.name)
        attachment = await self._wait_for_session(attachment)
        try:
            return await self._on(attachment, operation, call)
        except McpSessionExpired as exc:
            self.report_broken(str(exc))
            raise UpstreamUnavailable(
                self.name, f"{exc.reason}, twice in a row", Unserved.NO_SESSION
            ) from exc

    async def _on(
        self,
        attachment: _Attachment,
        operation: Callable[[McpClient], Awaitable[T]],
        call: _DownstreamCall | None,
    ) -> T:
        with trio.CancelScope() as scope:
            attachment.calls[scope] = call
            token = _current_call.set(call)
            try:
                return await operation(attachment.client)
            except McpSessionExpired:
                raise
            except Exception as exc:
                login = self._login_required_in(exc)
                if login is not None:
                    # Refused before it ran (401/403 and no refresh possible): not in flight.
                    self.login_required = login
                    self.report_broken(str(login))
                    raise UpstreamNeedsLogin(self.name, login.reason) from None
                refused = self._oauth_error_in(exc)
                if refused is not None:
                    # No token to send (a refresh failed; retried with backoff): not sent, so
                    # not run; the session itself is fine.
                    raise UpstreamUnavailable(self.name, str(refused), Unserved.REFUSED) from None
                if not isinstance(exc, McpConnectionError):
                    raise
                self.report_broken(str(exc))
                raise UpstreamUnavailable(self.name, exc.reason, Unserved.LOST_IN_FLIGHT) from exc
            finally:
                _current_call.reset(token)
                del attachment.calls[scope]
        raise UpstreamUnavailable(
            self.name,
            f"{attachment.lost_reason}; the call may or may not have run",
            Unserved.LOST_IN_FLIGHT,
        )

    async def refresh_listing(self, *, limit: float) -> None:
        """Fetch tools, prompts and resources; keeps the last listing when the upstream is slow
        or down, so its tools still route to an error that names it."""
        client = self.client
        if client is None:
            return
        capabilities = client.server_capabilities
        listing: Listing | None = None
        with trio.move_on_after(limit) as deadline:
            try:
                tools = await client.list_tools() if "tools" in capabilities else []
                prompts = await client.list_prompts() if "prompts" in capabilities else []
                resources: list[Resource] = []
                templates: list[ResourceTemplate] = []
                if "resources" in capabilities:
                    resources = await client.list_resources()
                    templates = await client.list_resource_templates()
                listing = Listing(tuple(tools), tuple(prompts), tuple(resources), tuple(templates))
            except McpConnectionError as exc:
                self.report_broken(str(exc))
                self.last_error = f"listing failed: {exc}"
            except McpError as exc:
                self.last_error = f"listing failed: {exc.message}"
            except Exception as exc:
                # A listing we cannot read (a malformed tool, say) must not end the proxy's
                # list-change service: keep the last listing and say why.
                login = self._login_required_in(exc)
                if login is not None:
                    self.login_required = login
                    self.report_broken(str(login))
                self.last_error = f"listing failed: {_describe(exc)}"
                logger.warning("upstream %r: %s", self.name, self.last_error)
        if deadline.cancelled_caught:
            self.last_error = f"listing timed out after {limit:g} s"
        if listing is not None:
            self.listing = listing
            self.listing_stale = False

    async def forward(
        self, method: str, params: JsonObject, ctx: RequestContext | None = None
    ) -> JsonObject:
        """Send a downstream request upstream, relaying its progress, logs and questions.

        With :attr:`route`, to the upstream of the request's session. Raises
        :class:`UpstreamUnavailable` for a call it did not serve.
        """
        forwarded = dict(params)
        meta = forwarded.pop("_meta", None)
        meta = {
            key: value
            for key, value in (meta if isinstance(meta, dict) else {}).items()
            if key not in self.consumed_meta_keys
        }
        if self.route is not None and ctx is not None:
            target = await self.route(ctx)
            if target is not None:
                return await target.forward(method, {**forwarded, "_meta": meta}, ctx)
        forwarded_meta = {
            key: value
            for key, value in meta.items()
            if not key.startswith(META_RESERVED_PREFIX) and key != "progressToken"
        }
        progress = None
        if ctx is not None:
            if ctx.progress_token is not None:
                # The client makes its own progress token; ours is mapped back in the callback.
                progress = ctx.report_progress
            # A stateless upstream logs only when asked; the downstream session filters again.
            level = ctx.session.log_level or "debug"
            if not (ctx.session.stateless and ctx.session.log_level is None):
                forwarded_meta[META_LOG_LEVEL] = level
        call = _DownstreamCall(ctx) if ctx is not None else None

        async def operation(client: McpClient) -> JsonObject:
            sent = dict(forwarded)
            wanted_meta = dict(forwarded_meta)
            if not client.stateless:
                wanted_meta.pop(META_LOG_LEVEL, None)
            if wanted_meta:
                sent["_meta"] = wanted_meta
            return await client.request(method, sent, progress=progress)

        self.calls_in_flight += 1
        try:
            result = await self._with_session(operation, call)
        finally:
            self.calls_in_flight -= 1
        return {key: value for key, value in result.items() if key not in _ERA_RESULT_KEYS}

    async def ping(self) -> None:
        async def operation(client: McpClient) -> None:
            await client.ping()

        await self._with_session(operation)


def login_required_in(exc: BaseException) -> LoginRequired | None:
    """The LoginRequired behind ``exc``, however the client carried it (an exception group,
    a cause, a context), or None."""
    from ..oauth import LoginRequired

    found = _behind(exc, LoginRequired)
    return found if isinstance(found, LoginRequired) else None


def oauth_error_in(exc: BaseException) -> OAuthError | None:
    """The OAuthError behind ``exc`` (an authorization server that failed), or None."""
    from ..oauth import OAuthError

    found = _behind(exc, OAuthError)
    return found if isinstance(found, OAuthError) else None


def _behind(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return None


def _attached(attachment: _Attachment | None) -> bool:
    return attachment is not None


def _describe(exc: BaseException) -> str:
    exc = collapse_exception_group(exc)
    if isinstance(exc, McpConnectionError | McpError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
