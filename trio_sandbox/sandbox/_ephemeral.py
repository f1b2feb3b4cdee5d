"""Ephemeral mode: each client gets a sandbox of its own, in both protocol eras.

Which sandbox serves a request (:meth:`SessionSandboxes.key`), first rule that applies:

1. a request that carries a sandbox handle (``_meta`` ``io.github.trio-sandbox/sandbox``,
   ``._handles``) gets that handle's sandbox, if the handle was issued to the request's client;
   otherwise it is refused (:class:`SandboxHandleError`) and nothing is started. This works in
   the persistent mode too (``Sandbox.session()``);
2. a handshake-era session (an HTTP ``Mcp-Session-Id``, a WebSocket connection) gets its own;
3. a stateless-era request (2026-07-28: no session) gets the sandbox of its client, keyed by the
   identity its face authenticated: the client certificate's SHA-256 fingerprint on a mutual-TLS
   face, the token's keyed digest on a token face (``mcp.ClientIdentity``). Two identities never
   share one;
4. a request with no identity at all (stdio, the embedder's own calls, a plain-HTTP loopback
   face) comes from the one client such a face has, the anonymous one: it shares the
   ``open_sandbox`` call's sandbox, as a persistent-mode client does.

A client's sandbox is taken from the pool of warm spares on its first forwarded request (a ready
one in the time of a lock, else the next one the pool starts) and stopped when its session ends,
it idles for ``ephemeral_idle_timeout``, or its handle is released; it is one generation, never
respawned, probed or given to anyone else.

At most ``max_sandboxes`` run at once, whatever their key, spares ready or starting included (the
pool starts fewer as clients take more). At the bound, a new sandbox takes the
place of the least recently used idle one (no call running or waiting for it), and starts once
that one has stopped; while every one has calls running, the new one's requests are refused at
once (:class:`~trio_sandbox.proxy.UpstreamUnavailable`, a tool error for ``tools/call``), saying
so.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeAlias

import attrs
import trio

from ..mcp import RequestContext
from ..mcp.lowlevel import ServerSession
from ..observe import LifecyclePhase, Observer, session_digest
from ..proxy import Unserved, Upstream, UpstreamUnavailable
from ._config import SandboxConfig
from ._errors import SandboxHandleError, SandboxStartError
from ._generation import Generation, first_line
from ._handles import HANDLE_META_KEY, HandleIssuer
from ._spares import SparePool
from ._unserved import sandbox_upstream

logger = logging.getLogger("trio_sandbox.sandbox")

_SESSION_ENDED = "the session ended"
_RECLAIMED = "stopped for another session's sandbox (max_sandboxes reached)"
_RELEASED = "its handle was released"

# What a sandbox is kept for: a handshake-era session, or the key of a client or handle.
SandboxKey: TypeAlias = ServerSession | str


@attrs.define(eq=False)
class _SessionSandbox:
    upstream: Upstream
    generation: Generation
    settled: trio.Event = attrs.field(factory=trio.Event)
    stopped: trio.Event = attrs.field(factory=trio.Event)
    last_used: float = 0.0
    # Requests waiting in ``route`` for this sandbox to settle.
    routing: int = 0
    # Set when this sandbox could not start or ended: its session's calls are refused at once.
    failure: str | None = None

    @property
    def idle(self) -> bool:
        return self.settled.is_set() and not self.upstream.calls_in_flight and not self.routing


@attrs.define(eq=False)
class SessionSandboxes:
    """Routes each downstream client to its own sandbox; a service run with ``serve``."""

    config: SandboxConfig
    # Where each client's sandbox comes from.
    pool: SparePool
    # The upstream name and tool prefix of every per-client sandbox (the main one's).
    name: str
    prefix: str
    # True (ephemeral mode): every client gets a sandbox of its own; False (persistent mode):
    # only requests that carry a handle do, the others share the main sandbox.
    per_client: bool = True
    handles: HandleIssuer = attrs.field(factory=HandleIssuer)
    # Told when a client's sandbox is handed to it and when it stops (the audit log, metrics).
    observer: Observer = attrs.field(factory=Observer)
    _sessions: dict[SandboxKey, _SessionSandbox] = attrs.field(factory=dict)
    _nursery: trio.Nursery | None = None

    @property
    def count(self) -> int:
        return len(self._sessions)

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Own the per-session sandboxes until cancelled (which stops them all)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    def key(self, ctx: RequestContext) -> SandboxKey | None:
        """What the sandbox of ``ctx``'s request is kept for (the module's rules); None: the
        main one. Raises :class:`SandboxHandleError` for a handle that is not this client's."""
        handle = ctx.meta.get(HANDLE_META_KEY)
        if handle is not None:
            return self.handles.sandbox_key(handle, ctx.client_identity)
        if not self.per_client:
            return None
        session = ctx.session
        if session.stateless:
            identity = ctx.client_identity
            return f"client {identity.key}" if identity is not None else None
        return session if session.session_id is not None else None

    def source_key(self, ctx: RequestContext) -> str | None:
        """Who the values ``ctx``'s sandbox shows belong to (placeholders are restored only
        towards it): the same string for every request its sandbox serves; None: the main
        sandbox's (or a request that will be refused)."""
        try:
            key = self.key(ctx)
        except SandboxHandleError:
            return None
        if isinstance(key, ServerSession):
            return f"session {key.session_id}"
        return key

    def issue_handle(self, ctx: RequestContext | None) -> str:
        """A fresh handle for the client of ``ctx`` (None: the embedder, the anonymous client)."""
        return self.handles.issue(ctx.client_identity if ctx is not None else None)

    async def release(self, key: str) -> None:
        """Stop the sandbox kept for ``key`` now (if any), and return once it has stopped."""
        entry = self._sessions.get(key)
        if entry is None:
            return
        self._forget(key, entry)
        entry.generation.end(_RELEASED)
        await entry.stopped.wait()

    async def route(self, ctx: RequestContext) -> Upstream | None:
        """The upstream of the request's client, started on first use; None: the main one.
        Raises :class:`UpstreamUnavailable` (refused: not run) when there is none for it, and
        :class:`SandboxHandleError` for a handle that is not this client's."""
        key = self.key(ctx)
        if key is None or self._nursery is None:
            return None
        if isinstance(key, ServerSession) and key.closed:
            return None
        entry = self._sessions.get(key)
        if entry is None:
            after: trio.Event | None = None
            if len(self._sessions) >= self.config.max_sandboxes:
                after = self._reclaim()
                if after is None:
                    raise self._refusal()
            upstream = sandbox_upstream(self.name, self.prefix, call_wait=self.config.respawn_wait)
            entry = _SessionSandbox(upstream, Generation(upstream))
            self._sessions[key] = entry
            self._nursery.start_soon(self._serve_session, key, entry, after)
        entry.last_used = trio.current_time()
        entry.routing += 1
        try:
            # Fail at once when the session's sandbox cannot start, rather than after call_wait.
            with trio.move_on_after(self.config.respawn_wait):
                await entry.settled.wait()
        finally:
            entry.routing -= 1
        if entry.failure is not None:
            raise UpstreamUnavailable(self.name, entry.failure, Unserved.REFUSED)
        return entry.upstream

    def _reclaim(self) -> trio.Event | None:
        """Stop the least recently used idle sandbox; when it has stopped (None: none is idle)."""
        idle = [(e.last_used, k, e) for k, e in self._sessions.items() if e.idle]
        if not idle:
            return None
        _last_used, key, entry = min(idle, key=lambda item: item[0])
        logger.info("max_sandboxes (%d) reached: %s", self.config.max_sandboxes, _RECLAIMED)
        # Forgotten at once: a later call of that client gets a fresh sandbox.
        self._forget(key, entry)
        entry.generation.end(_RECLAIMED)
        return entry.stopped

    def _refusal(self) -> UpstreamUnavailable:
        """Why a new session gets no sandbox now (nothing is started)."""
        reason = (
            f"no sandbox for this client: all {self.config.max_sandboxes} client sandboxes "
            "(max_sandboxes) have calls running; retry when one ends"
        )
        logger.warning("%s", reason)
        return UpstreamUnavailable(self.name, reason, Unserved.REFUSED)

    async def _serve_session(
        self, key: SandboxKey, entry: _SessionSandbox, after: trio.Event | None
    ) -> None:
        generation = entry.generation
        label = f"{self.name} for {_key_digest(key)}"
        try:
            if after is not None:
                await after.wait()  # the sandbox whose place this one takes has stopped
                if isinstance(key, ServerSession) and key.closed:
                    return
                if self._sessions.get(key) is not entry:
                    return  # released (or reclaimed) while it waited
            try:
                spare = await self.pool.take()
            except SandboxStartError as exc:
                entry.failure = f"the session's sandbox could not start: {first_line(exc)}"
                logger.warning("%s", entry.failure)
                self.observer.lifecycle(LifecyclePhase.FAILED, label, reason=entry.failure)
                return
            # This client's alone from now on; torn down by the pool when it ends.
            generation = entry.generation = spare.generation
            try:
                generation.move_to(entry.upstream)
                entry.settled.set()
                self.observer.lifecycle(LifecyclePhase.READY, label, generation=1)
                await self._wait_session_end(key, entry, generation)
                # Forget it before stopping it: a late call of the client gets a fresh one.
                self._forget(key, entry)
            finally:
                generation.end(_SESSION_ENDED)
            await spare.stopped.wait()
            if generation.end_reason not in (_SESSION_ENDED, _RECLAIMED, _RELEASED):
                entry.failure = f"the session's sandbox ended: {generation.end_reason}"
                logger.warning("%s", entry.failure)
        finally:
            generation.end(_SESSION_ENDED)
            entry.settled.set()
            self._forget(key, entry)
            entry.stopped.set()
            if generation.up:
                reason = entry.failure or generation.end_reason
                self.observer.lifecycle(LifecyclePhase.STOP, label, generation=1, reason=reason)

    async def _wait_session_end(
        self, key: SandboxKey, entry: _SessionSandbox, generation: Generation
    ) -> None:
        """Until the session closes (a session's sandbox), its sandbox ends, or it idles for
        the idle timeout."""
        waits: list[Callable[[], Awaitable[object]]] = [generation.ended.wait]
        if isinstance(key, ServerSession):
            waits.append(key.wait_closed)
        idle_limit = self.config.ephemeral_idle_timeout
        while True:
            idle_for = trio.current_time() - entry.last_used
            if idle_for >= idle_limit and not entry.upstream.calls_in_flight:
                logger.info("a client's sandbox idled for %.0f s: stopping it", idle_for)
                return
            # Wake at the idle deadline (again later when calls were still running then).
            remaining = idle_limit - idle_for if idle_for < idle_limit else idle_limit
            with trio.move_on_after(remaining):
                await _first_of(*waits)
                return

    def _forget(self, key: SandboxKey, entry: _SessionSandbox) -> None:
        if self._sessions.get(key) is entry:
            del self._sessions[key]


def _key_digest(key: SandboxKey) -> str:
    """A per-client sandbox in records: by a digest of what it is kept for (a session's id or
    a handle is half of what a client presents; a client's identity is a digest already)."""
    text = f"session {key.session_id}" if isinstance(key, ServerSession) else key
    return session_digest(text) or ""


async def _first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return as soon as one of ``waits`` returns."""
    async with trio.open_nursery() as nursery:

        async def one(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(one, wait)
