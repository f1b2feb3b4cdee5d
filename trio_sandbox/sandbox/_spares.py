"""Warm spares: sandboxes started ahead, fully ready, handed out in the time of a lock.

    SparePool.serve (a service: ``nursery.start``)
      nursery
      ├─ filler: keeps ``warm_spares`` sandboxes ready or starting, and one more per taker that
      │          waits, within ``max_sandboxes``; after a failed start it waits
      │          ``respawn_backoff * 2**n`` (up to ``respawn_backoff_max``) before the next
      └─ one task per sandbox started: a generation behind an upstream of its own (warden up,
         CA block read, mutual-TLS session open, tools listed); ready, it is queued; handed
         out, its taker moves it to the upstream that serves (:meth:`Generation.move_to`);
         ended, for whatever reason, it is torn down in this task

A spare is never shared and never returned: :meth:`SparePool.take` hands it to exactly one taker,
and whatever ends it (its session, a respawn, its own death) tears it down. A spare that dies
before it is handed out is dropped from the queue and replaced, never handed out.
"""

from __future__ import annotations

import collections
import logging
import math
from typing import NoReturn

import attrs
import trio

from ..concurrency import AsyncValue
from ._config import SandboxConfig
from ._errors import SandboxStartError
from ._generation import GENERATION_ENDINGS, Generation, as_start_error, first_line, run_generation
from ._launcher import Launcher
from ._unserved import sandbox_upstream

logger = logging.getLogger("trio_sandbox.sandbox")

# After a hand-out, its replacement waits this long unless a taker waits: starting a sandbox
# takes most of a CPU for half a second, which the one just handed out needs for its first calls.
REPLACE_AFTER = 0.25


def start_backoff(config: SandboxConfig, failures: int) -> float:
    """The wait before the next start after ``failures`` failed starts in a row."""
    if failures <= 0:
        return 0.0
    return float(min(config.respawn_backoff * 2 ** (failures - 1), config.respawn_backoff_max))


@attrs.define(eq=False)
class Spare:
    """One sandbox of the pool: ready when handed out, then its taker's alone."""

    generation: Generation
    # Counts against ``max_sandboxes`` once handed out (the persistent sandbox does not).
    counted: bool = True
    ready: bool = False
    handed_out: bool = False
    # Set once its processes are gone (it never started, or it was torn down).
    stopped: trio.Event = attrs.field(factory=trio.Event)


@attrs.frozen
class SpareStatus:
    """What ``status`` shows of the pool."""

    wanted: int
    ready: int
    starting: int
    in_use: int
    failures_in_a_row: int
    last_error: str | None
    next_start_in: float | None

    def to_json(self) -> dict[str, object]:
        return {
            "wanted": self.wanted,
            "ready": self.ready,
            "starting": self.starting,
            "in_use": self.in_use,
            "failures_in_a_row": self.failures_in_a_row,
            "last_error": self.last_error,
            "next_start_in": self.next_start_in,
        }


@attrs.define(eq=False)
class SparePool:
    """Sandboxes started ahead; a service run with ``nursery.start(pool.serve)``."""

    config: SandboxConfig
    launcher: Launcher
    # The upstream name and prefix of every sandbox it starts (the sandbox's own).
    name: str
    prefix: str
    _ready: collections.deque[Spare] = attrs.field(factory=collections.deque)
    _starting: int = 0
    # Handed out and not yet stopped; those counted against max_sandboxes.
    _in_use: int = 0
    _in_use_counted: int = 0
    # Takers waiting for a spare, counted against max_sandboxes or not.
    _waiting_counted: int = 0
    _waiting_uncounted: int = 0
    _failures_in_a_row: int = 0
    _failures_total: int = 0
    _last_failure: SandboxStartError | None = None
    _retry_at: float | None = None
    _handed_out_at: float = -math.inf
    # Bumped on every change of the above: wakes the filler and the takers.
    _changed: AsyncValue[int] = attrs.field(factory=lambda: AsyncValue(0))
    _nursery: trio.Nursery | None = None

    @property
    def ready_count(self) -> int:
        """Spares ready to hand out (one that died and is being torn down is not)."""
        return sum(1 for spare in self._ready if not spare.generation.ended.is_set())

    @property
    def starting_count(self) -> int:
        return self._starting

    def status(self) -> SpareStatus:
        retry_in = None
        if self._retry_at is not None:
            retry_in = max(0.0, self._retry_at - trio.current_time())
        return SpareStatus(
            wanted=self.config.warm_spares,
            ready=self.ready_count,
            starting=self._starting,
            in_use=self._in_use,
            failures_in_a_row=self._failures_in_a_row,
            last_error=self._last_failure.reason if self._last_failure is not None else None,
            next_start_in=retry_in,
        )

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep spares until cancelled (which tears every sandbox of the pool down)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await self._fill(nursery)

    async def wait_ready(self, count: int) -> None:
        """Until at least ``count`` spares are ready (not handed out)."""
        await self._changed.wait_value(lambda _: self.ready_count >= count)

    async def take(self, *, counted: bool = True, patient: bool = False) -> Spare:
        """A ready spare, now its caller's alone; waits for one when none is ready.

        Raises :class:`SandboxStartError` when a start fails while it waits, and at once when
        starts are backing off, unless ``patient`` (which waits through the backoff).
        The caller moves the spare's generation to its upstream and ends it when done with it.
        """
        if counted:
            self._waiting_counted += 1
        else:
            self._waiting_uncounted += 1
        failures_seen = self._failures_total
        self._poke()  # once: the filler starts one for this taker if none is ready or starting
        try:
            while True:
                spare = self._pop_ready()
                if spare is not None:
                    spare.handed_out = True
                    spare.counted = counted
                    self._in_use += 1
                    self._in_use_counted += counted
                    self._handed_out_at = trio.current_time()
                    return spare
                backing_off = self._retry_at is not None and trio.current_time() < self._retry_at
                if self._failures_total != failures_seen or (backing_off and not patient):
                    raise self._failure_error()
                await self._changed.wait_change()
        finally:
            if counted:
                self._waiting_counted -= 1
            else:
                self._waiting_uncounted -= 1
            self._poke()

    def _pop_ready(self) -> Spare | None:
        while self._ready:
            spare = self._ready.popleft()
            if not spare.generation.ended.is_set():
                return spare
            # Died while waiting: its task tears it down; never handed out.
        return None

    def _failure_error(self) -> SandboxStartError:
        failure = self._last_failure
        if failure is None:  # pragma: no cover - only raised after a failure was recorded
            return SandboxStartError("spare", "no sandbox could be started")
        reason = failure.reason
        if self._retry_at is not None:
            wait = max(0.0, self._retry_at - trio.current_time())
            reason += f" ({self._failures_in_a_row} failed starts in a row; next in {wait:.3g} s)"
        return SandboxStartError(
            failure.step, reason, exit_status=failure.exit_status, stderr_tail=failure.stderr_tail
        )

    def _poke(self) -> None:
        self._changed.value += 1

    def _deficit(self) -> int:
        """How many more sandboxes to start now (ready and starting ones count as had)."""
        room = self.config.max_sandboxes - self._in_use_counted
        idle_target = min(self.config.warm_spares + self._waiting_counted, room)
        target = max(0, idle_target) + self._waiting_uncounted
        return target - len(self._ready) - self._starting

    def _urgent(self) -> bool:
        """A taker waits that no ready spare will serve."""
        return self._waiting_counted + self._waiting_uncounted > len(self._ready)

    def _concurrency(self) -> int:
        """Starts at once: one ahead, or one per waiting taker (a burst of new sessions)."""
        return max(1, self._waiting_counted + self._waiting_uncounted)

    async def _fill(self, nursery: trio.Nursery) -> NoReturn:
        while True:
            if self._retry_at is not None:
                await trio.sleep_until(self._retry_at)
                self._retry_at = None
                self._poke()
            replace_at = self._handed_out_at + REPLACE_AFTER
            if not self._urgent() and self._deficit() > 0 and trio.current_time() < replace_at:
                with trio.move_on_at(replace_at):
                    await self._changed.wait_value(lambda _: self._urgent())
                continue
            if self._deficit() > 0 and self._starting < self._concurrency():
                self._starting += 1
                nursery.start_soon(self._run_spare)
                continue
            await self._changed.wait_change()

    async def _run_spare(self) -> None:
        upstream = sandbox_upstream(
            self.name, self.prefix, call_wait=self.config.respawn_wait, redact=self.config.redact
        )
        spare = Spare(Generation(upstream))
        try:
            await run_generation(
                self.launcher,
                self.config,
                spare.generation,
                warm=True,
                task_status=_ReadyReporter(self, spare),
            )
            if not spare.handed_out:  # it ended on its own (the pool's end cancels instead)
                logger.warning(
                    "a ready spare sandbox ended before it was handed out (%s); replacing it",
                    spare.generation.end_reason,
                )
        except GENERATION_ENDINGS as exc:
            self._start_failed(as_start_error(exc))
        finally:
            spare.generation.end("the pool stopped")
            if not spare.ready:
                self._starting -= 1
            elif not spare.handed_out:
                if spare in self._ready:
                    self._ready.remove(spare)
            else:
                self._in_use -= 1
                self._in_use_counted -= spare.counted
            spare.stopped.set()
            self._poke()

    def _spare_ready(self, spare: Spare) -> None:
        spare.ready = True
        self._starting -= 1
        self._failures_in_a_row = 0
        if self._waiting_counted + self._waiting_uncounted:
            self._handed_out_at = trio.current_time()  # it goes to a taker at once
        self._ready.append(spare)
        self._poke()

    def _start_failed(self, error: SandboxStartError) -> None:
        self._failures_in_a_row += 1
        self._failures_total += 1
        self._last_failure = error
        delay = start_backoff(self.config, self._failures_in_a_row)
        self._retry_at = trio.current_time() + delay
        logger.warning(
            "a sandbox could not start (%s); %d failed starts in a row, next in %.3g s",
            first_line(error),
            self._failures_in_a_row,
            delay,
        )


@attrs.define
class _ReadyReporter:
    """The task status of one spare's generation: queues it once it serves."""

    pool: SparePool
    spare: Spare

    def started(self, value: object = None) -> None:
        self.pool._spare_ready(self.spare)
