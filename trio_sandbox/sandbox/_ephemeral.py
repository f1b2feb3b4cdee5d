"""Ephemeral mode: each downstream MCP session gets a sandbox of its own.

A session's sandbox is taken from the pool of warm spares on its first forwarded request (a
ready one in the time of a lock, else the next one the pool starts) and stopped when the session
ends or idles for ``ephemeral_idle_timeout``; it is one generation, never respawned, probed or
given to anyone else.
Stateless-era requests (they have no session), stdio and the embedder's own calls are not routed
here: they share the ``open_sandbox`` call's sandbox.

At most ``max_sandboxes`` run at once, spares ready or starting included (the pool starts fewer
as sessions take more). At the bound, a new session's sandbox takes the place of the least
recently used idle one (no call running or waiting for it), and starts once that one
has stopped; while every one has calls running, the new session's requests are refused at once
(:class:`~trio_sandbox.proxy.UpstreamUnavailable`, a tool error for ``tools/call``), saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn

import attrs
import trio

from ..mcp import RequestContext
from ..mcp.lowlevel import ServerSession
from ..proxy import Unserved, Upstream, UpstreamUnavailable
from ._config import SandboxConfig
from ._errors import SandboxStartError
from ._generation import Generation, first_line
from ._spares import SparePool
from ._unserved import sandbox_upstream

logger = logging.getLogger("trio_sandbox.sandbox")

_SESSION_ENDED = "the session ended"
_RECLAIMED = "stopped for another session's sandbox (max_sandboxes reached)"


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
    """Routes each downstream session to its own sandbox; a service run with ``serve``."""

    config: SandboxConfig
    # Where each session's sandbox comes from.
    pool: SparePool
    # The upstream name and tool prefix of every per-session sandbox (the main one's).
    name: str
    prefix: str
    _sessions: dict[ServerSession, _SessionSandbox] = attrs.field(factory=dict)
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

    async def route(self, ctx: RequestContext) -> Upstream | None:
        """The upstream of the request's session, started on first use; None: the main one.
        Raises :class:`UpstreamUnavailable` (refused: not run) when there is none for it."""
        session = ctx.session
        if session.session_id is None or session.closed or self._nursery is None:
            return None
        entry = self._sessions.get(session)
        if entry is None:
            after: trio.Event | None = None
            if len(self._sessions) >= self.config.max_sandboxes:
                after = self._reclaim()
                if after is None:
                    raise self._refusal()
            upstream = sandbox_upstream(self.name, self.prefix, call_wait=self.config.respawn_wait)
            entry = _SessionSandbox(upstream, Generation(upstream))
            self._sessions[session] = entry
            self._nursery.start_soon(self._serve_session, session, entry, after)
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
        idle = [(e.last_used, s, e) for s, e in self._sessions.items() if e.idle]
        if not idle:
            return None
        _last_used, session, entry = min(idle, key=lambda item: item[0])
        logger.info("max_sandboxes (%d) reached: %s", self.config.max_sandboxes, _RECLAIMED)
        # Forgotten at once: a later call of that session gets a fresh sandbox.
        self._forget(session, entry)
        entry.generation.end(_RECLAIMED)
        return entry.stopped

    def _refusal(self) -> UpstreamUnavailable:
        """Why a new session gets no sandbox now (nothing is started)."""
        reason = (
            f"no sandbox for this session: all {self.config.max_sandboxes} session sandboxes "
            "(max_sandboxes) have calls running; retry when one ends"
        )
        logger.warning("%s", reason)
        return UpstreamUnavailable(self.name, reason, Unserved.REFUSED)

    async def _serve_session(
        self, session: ServerSession, entry: _SessionSandbox, after: trio.Event | None
    ) -> None:
        generation = entry.generation
        try:
            if after is not None:
                await after.wait()  # the sandbox whose place this one takes has stopped
                if session.closed:
                    return
            try:
                spare = await self.pool.take()
            except SandboxStartError as exc:
                entry.failure = f"the session's sandbox could not start: {first_line(exc)}"
                logger.warning("%s", entry.failure)
                return
            # This session's alone from now on; torn down by the pool when it ends.
            generation = entry.generation = spare.generation
            try:
                generation.move_to(entry.upstream)
                entry.settled.set()
                await self._wait_session_end(session, entry, generation)
                # Forget it before stopping it: a late call of the session gets a fresh one.
                self._forget(session, entry)
            finally:
                generation.end(_SESSION_ENDED)
            await spare.stopped.wait()
            if generation.end_reason not in (_SESSION_ENDED, _RECLAIMED):
                entry.failure = f"the session's sandbox ended: {generation.end_reason}"
                logger.warning("%s", entry.failure)
        finally:
            generation.end(_SESSION_ENDED)
            entry.settled.set()
            self._forget(session, entry)
            entry.stopped.set()

    async def _wait_session_end(
        self, session: ServerSession, entry: _SessionSandbox, generation: Generation
    ) -> None:
        """Until the session closes, its sandbox ends, or it idles for the idle timeout."""
        idle_limit = self.config.ephemeral_idle_timeout
        while True:
            idle_for = trio.current_time() - entry.last_used
            if idle_for >= idle_limit and not entry.upstream.calls_in_flight:
                logger.info("a session's sandbox idled for %.0f s: stopping it", idle_for)
                return
            # Wake at the idle deadline (again later when calls were still running then).
            remaining = idle_limit - idle_for if idle_for < idle_limit else idle_limit
            with trio.move_on_after(remaining):
                await _first_of(session.wait_closed, generation.ended.wait)
                return

    def _forget(self, session: ServerSession, entry: _SessionSandbox) -> None:
        if self._sessions.get(session) is entry:
            del self._sessions[session]


async def _first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return as soon as one of ``waits`` returns."""
    async with trio.open_nursery() as nursery:

        async def one(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(one, wait)
