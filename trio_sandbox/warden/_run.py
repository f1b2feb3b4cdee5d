"""The warden's Trio side: run the chosen back end until the command exits, a signal comes, the
warden's parent dies (the lifeline) or its namespace helper does."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

import attrs
import trio

from ._bwrap_run import supervise_bwrap
from ._container import run_container
from ._prelaunch import Prelaunch
from ._process import run_process
from ._spec import WARDEN_ERROR_STATUS, Backend, WrapSpec
from ._stopping import PARENT_GONE_STATUS, StopGrace

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


async def _run_backend(
    backend: Backend, spec: WrapSpec, prelaunch: Prelaunch, grace: StopGrace
) -> int:
    if prelaunch.bwrap is not None:
        return await supervise_bwrap(prelaunch.bwrap, spec, grace)
    if backend == "process":
        return await run_process(spec, grace)
    if backend == "kubernetes":
        # Imported here: its client library must not slow the other back ends down.
        from ._kubernetes_run import run_kubernetes

        return await run_kubernetes(spec, grace)
    return await run_container(backend, spec, grace, prelaunch.netns_helper)


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


async def _wait_exit(pidfd: int) -> None:
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        trio.lowlevel.notify_closing(pidfd)


async def _watch_helper(pid: int, stop: _Stop) -> None:
    """Without its namespace helper the warden cannot reach into the sandbox any more: stop it,
    so that whoever runs the warden starts a new one."""
    pidfd = os.pidfd_open(pid)
    try:
        await _wait_exit(pidfd)
    finally:
        os.close(pidfd)
    stop.by_failure("the namespace helper died: the sandbox's ports cannot be reached any more")


async def _watch_parent(pidfd: int, stop: _Stop) -> None:
    await _wait_exit(pidfd)
    print(
        "trio-sandbox-warden: the warden's parent is gone: stopping the sandbox",
        file=sys.stderr,
        flush=True,
    )
    stop.by_lifeline()


async def wrap(
    backend: Backend,
    spec: WrapSpec,
    prelaunch: Prelaunch | None = None,
    early_signals: Sequence[int] = (),
) -> int:
    """Run the sandbox until the command exits (its status) or SIGINT/SIGTERM/SIGHUP arrive
    (the command is stopped, everything reaped, status 128 + signal number: 130 for SIGINT),
    or the warden's parent dies (stopped at once, status 129). `early_signals` arrived before
    Trio was running (bwrap starts first)."""
    prelaunch = prelaunch or Prelaunch()
    helper = prelaunch.netns_helper or (prelaunch.bwrap.netns_helper if prelaunch.bwrap else None)
    lifeline = prelaunch.lifeline
    stop = _Stop()
    for signum in early_signals:
        stop.by_signal(signum)
    status = 0
    try:
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async with trio.open_nursery() as nursery:

                async def watch_signals() -> None:
                    async for signum in signals:
                        stop.by_signal(signum)
                        return

                nursery.start_soon(watch_signals)
                if helper is not None:
                    nursery.start_soon(_watch_helper, helper.pid, stop)
                if lifeline is not None and lifeline >= 0:
                    nursery.start_soon(_watch_parent, lifeline, stop)
                with stop.scope:
                    status = await _run_backend(backend, spec, prelaunch, stop.grace)
                nursery.cancel_scope.cancel()
    finally:
        if helper is not None:
            helper.close()
        if lifeline is not None and lifeline >= 0:
            os.close(lifeline)
    return stop.status(status)
