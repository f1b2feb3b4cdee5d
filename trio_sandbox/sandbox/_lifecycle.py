"""``open_sandbox``: the sandbox, its proxy and its health monitor in one cancel scope.

    open_sandbox(config)
      nursery (sandbox scope)
      ├─ supervisor ── generation nursery (cancelled and reopened to respawn)
      │                 └─ launcher: warden child (CA parser, then log; stderr log + tail)
      │                              and the upstream MCP session to the sandbox (mutual TLS)
      ├─ proxy server (serve_proxy): the one endpoint clients use, stable across respawns
      ├─ health monitor (persistent mode)
      └─ per-session sandboxes (ephemeral mode), one generation each

Leaving the ``async with`` cancels the scope: the proxy shuts down gracefully within a bound and
the warden gets SIGINT, then SIGKILL for its whole process group after ``stop_grace``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import trio

from ..mcp import (
    CallToolResult,
    McpError,
    RequestContext,
    Resource,
    ResourceContents,
    ServerSession,
    Tool,
)
from ..mcp._client import McpClient, McpConnectionError, ProgressCallback, open_mcp_client
from ..mcp._memory import memory_transport
from ..proxy import HttpFace, ProxyFace, ProxyHandle, serve_proxy
from ..tls import CertificateChain
from ._config import SandboxConfig, SandboxMode
from ._errors import SandboxFailed, SandboxRestarted, SandboxStartError, SandboxUnavailable
from ._groups import leaves, single_error
from ._health import HealthCell, SandboxHealth
from ._launcher import Launched, Launcher, LaunchHooks, WardenExited, warden_launcher
from ._upstream import RESTARTED_META_KEY, UNAVAILABLE_META_KEY, SandboxUpstream

logger = logging.getLogger("trio_sandbox.sandbox")

# How often a per-session sandbox looks whether its session ended (the proxy has no hook yet).
SESSION_END_POLL = 1.0


class SessionLost(Exception):
    """A call found the session to the sandbox broken."""


class _RestartRequested(Exception):
    pass


# What ends a generation without being a bug of ours.
_GENERATION_ENDINGS = (SandboxStartError, WardenExited, SessionLost, McpConnectionError, McpError)


def respawn_delay(config: SandboxConfig, attempt: int) -> float:
    """The wait before respawn attempt ``attempt`` (1-based) of a series: none before the first
    (a sandbox that served died: get it back at once), then ``respawn_backoff`` doubling up to
    ``respawn_backoff_max``."""
    if attempt <= 1:
        return 0.0
    return float(min(config.respawn_backoff * 2 ** (attempt - 2), config.respawn_backoff_max))


def _generation_ending(error: BaseException) -> Exception | None:
    """The one error that says why a generation ended, or None when it was something else."""
    found = [leaf for leaf in leaves(error) if not isinstance(leaf, trio.Cancelled)]
    if not found or not all(isinstance(leaf, _GENERATION_ENDINGS) for leaf in found):
        return None
    for kind in _GENERATION_ENDINGS:  # the most telling first
        for leaf in found:
            if isinstance(leaf, kind):
                return leaf
    return None  # pragma: no cover


def _reraise_cancellation(error: BaseException) -> None:
    """We are being cancelled: let only the cancellation out, not why the generation ended
    meanwhile (a sandbox killed during teardown must not turn into an error of its own)."""
    if isinstance(error, BaseExceptionGroup):
        cancelled, _ = error.split(trio.Cancelled)
        if cancelled is not None:
            raise cancelled from None


def _as_start_error(exc: Exception) -> SandboxStartError:
    if isinstance(exc, SandboxStartError):
        return exc
    if isinstance(exc, WardenExited):
        return SandboxStartError(
            "ready", "the warden exited", exit_status=exc.status, stderr_tail=exc.stderr_tail
        )
    return SandboxStartError("session", str(exc))


def _first_line(error: BaseException) -> str:
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__


@attrs.define(eq=False)
class _Generation:
    """One running sandbox: its cancel scope and what its launcher reported."""

    upstream: SandboxUpstream
    launched: Launched | None = None
    restart: trio.Event = attrs.field(factory=trio.Event)
    restart_reason: str = ""
    down_reason: str | None = None
    up: bool = False  # it served (passed readiness and listing)

    def went_down(self, reason: str) -> None:
        if self.down_reason is None:
            self.down_reason = reason
            self.upstream.detach(f"the sandbox went down: {reason}")

    def request_restart(self, reason: str) -> None:
        if not self.restart.is_set():
            self.restart_reason = reason
            self.restart.set()


@attrs.define(eq=False)
class _SessionSandbox:
    """The sandbox of one downstream MCP session (ephemeral mode)."""

    upstream: SandboxUpstream
    settled: trio.Event = attrs.field(factory=trio.Event)
    last_used: float = 0.0
    in_flight: int = 0
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)


@attrs.define(eq=False)
class Sandbox:
    """A running sandbox behind its proxy. Get one from :func:`open_sandbox`."""

    config: SandboxConfig
    chain: CertificateChain
    upstream: SandboxUpstream
    launcher: Launcher
    _nursery: trio.Nursery
    proxy: ProxyHandle | None = None
    _local: McpClient | None = None
    _health: HealthCell = attrs.field(factory=HealthCell)
    _generation: _Generation | None = None
    _generation_up: trio.Event = attrs.field(factory=trio.Event)
    # Set when a generation passes a health probe: only then does a death start a new series
    # of respawn attempts (a sandbox that dies right after each start must end up failing).
    _proved_healthy: bool = False
    _sessions: dict[ServerSession, _SessionSandbox] = attrs.field(factory=dict)

    # --- what users see -----------------------------------------------------------------------

    @property
    def proxy_url(self) -> str:
        """Where other processes reach the proxy (stable across respawns)."""
        assert self.proxy is not None
        assert self.proxy.url is not None
        return self.proxy.url

    @property
    def health(self) -> SandboxHealth:
        return self._health.value

    async def wait_health_change(self) -> SandboxHealth:
        """Block until the health changes; returns the new value."""
        return await self._health.wait_change()

    @property
    def tools(self) -> list[Tool]:
        """The tools clients of the proxy see, as of the last listing."""
        assert self.proxy is not None
        return [Tool.from_json(raw) for raw in self.proxy.server.listed_tools]

    @property
    def warden_pid(self) -> int | None:
        """The current generation's warden (its process group has the same id), if any."""
        generation = self._generation
        if generation is None or generation.launched is None:
            return None
        return generation.launched.warden_pid

    @property
    def sandbox_url(self) -> str | None:
        """Where the current generation's tool server is published (behind mutual TLS)."""
        generation = self._generation
        if generation is None or generation.launched is None:
            return None
        return generation.launched.url

    @property
    def start_timeline(self) -> Mapping[str, float]:
        """trio clock times of the current generation's start milestones."""
        generation = self._generation
        if generation is None or generation.launched is None:
            return {}
        return generation.launched.timeline

    @property
    def session_sandboxes(self) -> int:
        """How many per-session sandboxes exist now (ephemeral mode)."""
        return len(self._sessions)

    async def list_tools(self) -> list[Tool]:
        return await self._client().list_tools()

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> CallToolResult:
        """Call a tool through the proxy, as any client would.

        Raises :class:`SandboxRestarted` when the sandbox went away while the call was in
        flight (it may or may not have run; it is not retried), and :class:`SandboxUnavailable`
        when no sandbox came back within ``respawn_wait``.
        """
        result = await self._client().call_tool(name, arguments or {}, progress=progress)
        meta = result.meta or {}
        if meta.get(RESTARTED_META_KEY):
            raise SandboxRestarted(result.text_content)
        if meta.get(UNAVAILABLE_META_KEY):
            raise SandboxUnavailable(result.text_content)
        return result

    def status(self) -> dict[str, object]:
        """Health and upstream states, as ``trio-sandbox status`` shows them."""
        assert self.proxy is not None
        return {
            "mode": self.config.mode.value,
            "image": self.config.image,
            "proxy_url": self.proxy.url,
            "health": self.health.to_json(),
            "upstreams": [status.to_json() for status in self.proxy.statuses()],
        }

    async def _read_status(self, uri: str, ctx: RequestContext) -> list[ResourceContents]:
        text = json.dumps(self.status(), sort_keys=True)
        return [ResourceContents(uri=uri, text=text, mime_type="application/json")]

    async def restart(self) -> None:
        """Replace the sandbox with a fresh one; returns once the new one serves."""
        up = self._generation_up = trio.Event()
        if self._generation is not None:
            self._generation.request_restart("restart requested")
        await up.wait()

    def write_client_bundle(self, directory: str | os.PathLike[str]) -> Any:
        """Write ca.pem, client.pem and client.key (0600) for a client in another process."""
        return self.chain.write_client_bundle(directory)

    def _client(self) -> McpClient:
        assert self._local is not None
        return self._local

    # --- generations --------------------------------------------------------------------------

    async def _supervise(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Keep a sandbox running; respawn on request or death, with backoff, up to a limit."""
        config = self.config
        failed_attempts = 0  # consecutive respawns that did not lead to a healthy sandbox
        first = True
        while True:
            generation = _Generation(self.upstream)
            self._generation = generation
            self._proved_healthy = False
            try:
                await self._run_generation(generation, on_up=task_status if first else None)
                reason = generation.restart_reason  # it returned: a restart was asked for
                user_request = reason == "restart requested"
            except BaseException as exc:
                ending = _generation_ending(exc)
                if ending is None:
                    raise
                _reraise_cancellation(exc)
                if first and not generation.up:
                    raise _as_start_error(ending) from None
                reason = generation.down_reason or _first_line(ending)
                if isinstance(ending, SandboxStartError):
                    reason = _first_line(ending)
                user_request = False
            first = False
            generation.went_down(reason)
            if user_request:
                failed_attempts = 0
                delay = 0.0
            else:
                if self._proved_healthy:
                    failed_attempts = 0
                failed_attempts += 1
                if failed_attempts > config.max_respawn_attempts:
                    self._health.update(healthy=False, respawning=False, last_error=reason)
                    raise SandboxFailed(
                        f"the sandbox failed {failed_attempts - 1} respawn attempts in a row; "
                        f"last: {reason}"
                    )
                delay = respawn_delay(config, failed_attempts)
            self._health.update(
                healthy=False,
                respawning=True,
                consecutive_ok=0,
                last_error=reason,
                total_respawn_attempts=self.health.total_respawn_attempts + 1,
            )
            logger.warning("sandbox down (%s); respawning in %.3g s", reason, delay)
            await trio.sleep(delay)

    async def _run_generation(
        self, generation: _Generation, *, on_up: trio.TaskStatus[None] | None
    ) -> None:
        """Run one generation until it dies (raises) or a restart is asked for (returns)."""
        upstream = generation.upstream
        hooks = LaunchHooks(upstream.hooks, generation.went_down)
        async with trio.open_nursery() as nursery:
            launched: Launched = await nursery.start(self.launcher, self.config, hooks)
            generation.launched = launched
            upstream.attach(launched.client)
            await upstream.refresh_listing(limit=self.config.ready_timeout)
            if upstream.listing is None or upstream.listing_stale:
                raise SandboxStartError("listing", upstream.last_error or "no tool listing")
            nursery.start_soon(self._respawn_when_broken, generation)
            self._health.update(
                healthy=True,
                respawning=False,
                consecutive_ok=1,
                consecutive_failures=0,
                last_ok=trio.current_time(),
                generation=self.health.generation + 1,
            )
            generation.up = True
            if on_up is not None:
                on_up.started()
            self._generation_up.set()
            await generation.restart.wait()
            generation.went_down(generation.restart_reason)
            nursery.cancel_scope.cancel()

    async def _respawn_when_broken(self, generation: _Generation) -> None:
        """A call that lost the session is the earliest sign of a dead sandbox: respawn now
        rather than after ``respawn_threshold`` failed probes."""
        await generation.upstream.wait_broken()
        reason = generation.upstream.last_error or "the session to the sandbox broke"
        generation.went_down(reason)
        raise SessionLost(reason)

    # --- health -------------------------------------------------------------------------------

    async def _monitor(self) -> None:
        """Probe the sandbox's own session (not the merged proxy view) every interval."""
        config = self.config
        while True:
            await trio.sleep(config.health_interval)
            generation = self._generation
            client = self.upstream.client
            if generation is None or client is None:
                continue  # respawning: the supervisor reports on that
            error: str | None = None
            with trio.move_on_after(config.health_timeout) as deadline:
                try:
                    await client.ping()
                except McpConnectionError as exc:
                    error = f"ping failed: {exc.reason}"
                except McpError:
                    pass  # it answered; it just does not like ping
            if deadline.cancelled_caught:
                error = f"no answer to ping within {config.health_timeout:g} s"
            if generation is not self._generation:
                continue  # that sandbox is gone already
            health = self.health
            if error is None:
                self._proved_healthy = True
                self._health.update(
                    healthy=True,
                    consecutive_ok=health.consecutive_ok + 1,
                    consecutive_failures=0,
                    last_ok=trio.current_time(),
                )
                continue
            failures = health.consecutive_failures + 1
            self._health.update(
                healthy=False, consecutive_ok=0, consecutive_failures=failures, last_error=error
            )
            if failures >= config.respawn_threshold:
                logger.warning("sandbox unhealthy %d times in a row: respawning", failures)
                generation.request_restart(f"{failures} failed health probes; last: {error}")

    # --- ephemeral mode: one sandbox per downstream session -----------------------------------

    async def _route_session(self, ctx: RequestContext) -> SandboxUpstream | None:
        session = ctx.session
        if session.session_id is None or session.closed:
            return None  # stateless requests and the embedder's own client use the main one
        entry = self._sessions.get(session)
        if entry is None:
            entry = _SessionSandbox(
                SandboxUpstream(
                    self.upstream.name, self.upstream.prefix, call_wait=self.config.respawn_wait
                )
            )
            self._sessions[session] = entry
            self._nursery.start_soon(self._serve_session_sandbox, session, entry)
        entry.last_used = trio.current_time()
        # Fail at once when the session's sandbox cannot start, rather than after call_wait.
        with trio.move_on_after(self.config.respawn_wait):
            await entry.settled.wait()
        return entry.upstream

    async def _serve_session_sandbox(self, session: ServerSession, entry: _SessionSandbox) -> None:
        generation = _Generation(entry.upstream)
        try:
            with entry.scope:
                async with trio.open_nursery() as nursery:
                    hooks = LaunchHooks(entry.upstream.hooks, generation.went_down)
                    launched: Launched = await nursery.start(self.launcher, self.config, hooks)
                    entry.upstream.attach(launched.client)
                    entry.settled.set()
                    await self._wait_session_end(session, entry)
                    # Forget it before stopping it: a late call of the session gets a fresh one.
                    self._forget_session(session, entry)
                    nursery.cancel_scope.cancel()
        except BaseException as exc:
            ending = _generation_ending(exc)
            if ending is None:
                raise
            _reraise_cancellation(exc)
            entry.upstream.failure = f"the session's sandbox ended: {_first_line(ending)}"
            logger.warning("%s", entry.upstream.failure)
        finally:
            generation.went_down("the session ended")
            entry.settled.set()
            self._forget_session(session, entry)

    def _forget_session(self, session: ServerSession, entry: _SessionSandbox) -> None:
        if self._sessions.get(session) is entry:
            del self._sessions[session]

    async def _wait_session_end(self, session: ServerSession, entry: _SessionSandbox) -> None:
        idle_limit = self.config.ephemeral_idle_timeout
        while not session.closed:
            idle_for = trio.current_time() - entry.last_used
            if idle_for >= idle_limit and not entry.upstream.calls_in_flight:
                logger.info("a session's sandbox idled for %.0f s: stopping it", idle_for)
                return
            await trio.sleep(min(SESSION_END_POLL, max(idle_limit - idle_for, SESSION_END_POLL)))


STATUS_URI = "trio-sandbox://status"
STATUS_RESOURCE = Resource(
    uri=STATUS_URI,
    name="status",
    title="Sandbox status",
    description="Health of the sandbox and the state of every upstream of the proxy (JSON).",
    mime_type="application/json",
)


@asynccontextmanager
async def open_sandbox(
    config: SandboxConfig | None = None,
    *,
    face: ProxyFace | None = None,
    launcher: Launcher = warden_launcher,
) -> AsyncIterator[Sandbox]:
    """Start a sandbox and its proxy; leaving the block tears everything down.

    ``face`` defaults to mutual TLS on a free 127.0.0.1 port with a fresh certificate chain
    (``sandbox.write_client_bundle`` exports what another process needs to connect).
    ``launcher`` starts one sandbox generation; the warden of the contract by default.
    Raises :class:`SandboxStartError` when the first sandbox does not come up, and
    :class:`SandboxFailed` (out of the ``async with``) when respawning gave up.
    """
    config = config or SandboxConfig()
    chain = face.chain if isinstance(face, HttpFace) and face.chain is not None else None
    chain = chain or CertificateChain.generate()
    face = face or HttpFace(chain=chain)
    upstream = SandboxUpstream(
        config.sandbox_name, config.sandbox_prefix, call_wait=config.respawn_wait
    )
    with single_error():
        async with trio.open_nursery() as nursery:
            sandbox = Sandbox(config, chain, upstream, launcher, nursery)
            if config.mode is SandboxMode.EPHEMERAL:
                upstream.route = sandbox._route_session
            await nursery.start(sandbox._supervise)
            try:
                proxy: ProxyHandle = await nursery.start(
                    partial(
                        serve_proxy,
                        [upstream, *config.upstreams],
                        face,
                        call_wait=config.respawn_wait,
                    )
                )
            except BaseException as exc:
                bind_error = [leaf for leaf in leaves(exc) if isinstance(leaf, OSError)]
                if not bind_error:
                    raise
                raise SandboxStartError(
                    "proxy", f"the proxy could not start: {bind_error[0]}"
                ) from None
            sandbox.proxy = proxy
            proxy.server.add_resource(STATUS_RESOURCE, sandbox._read_status)
            if config.mode is SandboxMode.PERSISTENT:
                nursery.start_soon(sandbox._monitor)
            async with open_mcp_client(memory_transport(proxy.server, name="sandbox")) as local:
                sandbox._local = local
                yield sandbox
            nursery.cancel_scope.cancel()
