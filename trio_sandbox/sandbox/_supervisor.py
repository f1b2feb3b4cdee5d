"""Keeping a sandbox running: one generation after another, with backoff and a limit.

Respawning is cancelling the generation's nursery (tearing it down completely) and opening a new
one. The first respawn after a sandbox that served is immediate, then ``respawn_backoff * 2**n``
up to ``respawn_backoff_max``; the series resets only after a passed health probe or a restart the
user asked for, so a sandbox that dies right after each start ends in :class:`SandboxFailed`.

With a pool of warm spares (``warm_spares``), a generation is a spare moved onto the upstream:
a respawn is a swap (the old one is torn down in the pool while the next serves), and the pool's
own backoff paces failed starts, so the supervisor adds none of its own.
"""

from __future__ import annotations

import logging

import attrs
import trio

from ..concurrency import AsyncValue
from ..observe import LifecyclePhase, Observer
from ..proxy import Upstream
from ._config import SandboxConfig
from ._errors import SandboxFailed
from ._generation import GENERATION_ENDINGS, Generation, as_start_error, first_line, run_generation
from ._health import SandboxHealth
from ._launcher import Launcher
from ._spares import SparePool, start_backoff

logger = logging.getLogger("trio_sandbox.sandbox")

RESTART_REQUESTED = "restart requested"


def respawn_delay(config: SandboxConfig, attempt: int) -> float:
    """The wait before respawn attempt ``attempt`` (1-based) of a series: none before the first
    (a sandbox that served died: get it back at once), then ``respawn_backoff`` doubling up to
    ``respawn_backoff_max``: the pool's backoff after ``attempt - 1`` failed starts."""
    return start_backoff(config, attempt - 1)


@attrs.define(eq=False)
class Supervisor:
    """Runs generations of the sandbox behind one upstream of the proxy."""

    config: SandboxConfig
    launcher: Launcher
    upstream: Upstream
    # Published on every change; ``generation`` counts the generations that served.
    health: AsyncValue[SandboxHealth] = attrs.field(factory=lambda: AsyncValue(SandboxHealth()))
    current: Generation | None = None
    # Where generations come from when set (warm spares); else each is started here, cold.
    pool: SparePool | None = None
    # Told of each start, ready, respawn and failure (the audit log, metrics, traces).
    observer: Observer = attrs.field(factory=Observer)

    def _lifecycle(self, phase: LifecyclePhase, reason: str | None = None) -> None:
        generation = self.health.value.generation
        if phase is LifecyclePhase.START:
            generation += 1  # the one being started
        self.observer.lifecycle(phase, self.upstream.name, generation=generation, reason=reason)

    async def restart(self) -> None:
        """End the current generation; return once its successor serves."""
        served = self.health.value.generation
        if self.current is not None:
            self.current.end(RESTART_REQUESTED, user_restart=True)
        await self.health.wait_value(lambda health: health.generation > served)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a sandbox running until cancelled; reports started once the first one serves.

        Raises :class:`SandboxStartError` when the first generation never serves, and
        :class:`SandboxFailed` when ``max_respawn_attempts`` respawns in a row did not lead to
        a healthy sandbox.
        """
        failed_attempts = 0  # consecutive respawns that did not lead to a healthy sandbox
        first = True
        while True:
            generation = Generation(self.upstream)
            self.current = generation
            reporter = _UpReporter(self, generation, task_status if first else None)
            self._lifecycle(LifecyclePhase.START)
            try:
                if self.pool is not None:
                    generation = await self._serve_spare(self.pool, reporter)
                else:
                    await run_generation(
                        self.launcher, self.config, generation, task_status=reporter
                    )
            except GENERATION_ENDINGS as exc:
                if first:
                    self._lifecycle(LifecyclePhase.FAILED, first_line(exc))
                    raise as_start_error(exc) from None
                generation.end(first_line(exc))
            first = False
            reason = generation.end_reason or "the sandbox ended"
            if generation.user_restart:
                failed_attempts = 0
                delay = 0.0
            else:
                if generation.proved_healthy:
                    failed_attempts = 0
                failed_attempts += 1
                if failed_attempts > self.config.max_respawn_attempts:
                    self.health.value = attrs.evolve(
                        self.health.value, healthy=False, respawning=False, last_error=reason
                    )
                    self._lifecycle(LifecyclePhase.FAILED, reason)
                    raise SandboxFailed(
                        f"the sandbox failed {failed_attempts - 1} respawn attempts in a row; "
                        f"last: {reason}"
                    )
                # The pool backs off its own failed starts.
                delay = respawn_delay(self.config, failed_attempts) if self.pool is None else 0.0
            self.health.value = attrs.evolve(
                self.health.value,
                healthy=False,
                respawning=True,
                consecutive_ok=0,
                last_error=reason,
                total_respawn_attempts=self.health.value.total_respawn_attempts + 1,
            )
            logger.warning("sandbox down (%s); respawning in %.3g s", reason, delay)
            self._lifecycle(LifecyclePhase.RESPAWN, reason)
            await trio.sleep(delay)

    async def _serve_spare(self, pool: SparePool, reporter: _UpReporter) -> Generation:
        """Swap a ready spare in and hold it until it ends; the pool tears it down."""
        spare = await pool.take(counted=False, patient=True)
        generation = spare.generation
        try:
            self.current = generation
            generation.move_to(self.upstream)
            reporter.generation = generation
            reporter.started()
            await generation.ended.wait()
        finally:
            generation.end("the sandbox was stopped")
        return generation

    def _generation_serves(self, generation: Generation) -> None:
        self.health.value = attrs.evolve(
            self.health.value,
            healthy=True,
            respawning=False,
            consecutive_ok=1,
            consecutive_failures=0,
            last_ok=trio.current_time(),
            generation=self.health.value.generation + 1,
        )
        generation.numbered(self.health.value.generation)
        self.upstream.generation = self.health.value.generation
        self._lifecycle(LifecyclePhase.READY)
        if self.health.value.generation > 1:
            logger.warning("sandbox back (generation %d)", self.health.value.generation)


@attrs.define
class _UpReporter:
    """The task status of one generation: publishes its health, reports the first one up."""

    supervisor: Supervisor
    generation: Generation
    outer: trio.TaskStatus[None] | None

    def started(self, value: object = None) -> None:
        self.supervisor._generation_serves(self.generation)
        if self.outer is not None:
            self.outer.started()
