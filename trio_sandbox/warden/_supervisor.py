"""The warden's Trio side: supervise the launched back end until the command exits, a signal
comes, the warden's parent dies (the lifeline) or its namespace helper does."""

from __future__ import annotations

import signal
import sys

import attrs
import trio

from ..concurrency import run_until_signalled
from ._backend import Launched
from ._pidfd import close_pidfd, wait_exited, wait_pid_exited
from ._spec import WARDEN_ERROR_STATUS, WrapSpec
from ._stopping import PARENT_GONE_STATUS, StopGrace

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@attrs.define(eq=False)
class _Stop:
    """Why the sandbox is being stopped (the first reason wins) and the scope to cancel."""

    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    grace: StopGrace = attrs.field(factory=StopGrace)
    signal: int | None = None
    failure: str | None = None
    parent_gone: bool = False

    def by_signal(self, signum: int) -> None:
        if self.signal is None:
            self.signal = signum
        self.scope.cancel()

    def by_failure(self, failure: str) -> None:
        self.failure = self.failure or failure
        self.scope.cancel()

    def by_lifeline(self) -> None:
        self.parent_gone = True
        self.grace.hurry()
        self.scope.cancel()

    def status(self, backend_status: int) -> int:
        if self.failure is not None:
            print(f"trio-sandbox-warden: error: {self.failure}", file=sys.stderr, flush=True)
            return WARDEN_ERROR_STATUS
        if self.parent_gone:
            return PARENT_GONE_STATUS
        if self.signal is not None:
            return 128 + self.signal
        return 128 - backend_status if backend_status < 0 else backend_status


async def _watch_helper(pid: int, stop: _Stop) -> None:
    """Without its namespace helper the warden cannot reach into the sandbox any more: stop it,
    so that whoever runs the warden starts a new one."""
    await wait_pid_exited(pid)
    stop.by_failure("the namespace helper died: the sandbox's ports cannot be reached any more")


async def _watch_parent(pidfd: int, stop: _Stop) -> None:
    await wait_exited(pidfd)
    print(
        "trio-sandbox-warden: the warden's parent is gone: stopping the sandbox",
        file=sys.stderr,
        flush=True,
    )
    stop.by_lifeline()


async def supervise_sandbox(launched: Launched, spec: WrapSpec, lifeline: int | None = None) -> int:
    """Run the launched sandbox until the command exits (its status) or SIGINT/SIGTERM/SIGHUP
    arrive (the command is stopped, everything reaped, status 128 + signal number: 130 for
    SIGINT; one that came before Trio ran counts too), or the warden's parent dies (stopped at
    once, status 129). ``lifeline``: a pidfd of the warden's parent, or None (nothing to
    watch)."""
    helper = launched.netns_helper
    stop = _Stop()

    async def run() -> int:
        with stop.scope:
            return await launched.run(spec, stop.grace)
        return 0  # stopped by the helper's death or the lifeline: the status says why

    try:
        # The watchers outlive a signal's stop, so that the lifeline still hurries it.
        async with trio.open_nursery() as nursery:
            if helper is not None:
                nursery.start_soon(_watch_helper, helper.pid, stop)
            if lifeline is not None and lifeline >= 0:
                nursery.start_soon(_watch_parent, lifeline, stop)
            # "cancel": the back end launched before Trio, so even a signal that came first
            # lets its run stop and reap what it started.
            status = await run_until_signalled(
                run, on_signal=stop.by_signal, signals=STOP_SIGNALS, early="cancel"
            )
            nursery.cancel_scope.cancel()
    finally:
        if helper is not None:
            helper.close()
        if lifeline is not None and lifeline >= 0:
            close_pidfd(lifeline)
    return stop.status(0 if status is None else status)
