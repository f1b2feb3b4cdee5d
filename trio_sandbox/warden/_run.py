"""The warden's Trio side: run the chosen back end until the command exits or a signal."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

import trio

from ._bwrap_run import supervise_bwrap
from ._container import run_container
from ._prelaunch import Prelaunch
from ._process import run_process
from ._spec import WARDEN_ERROR_STATUS, Backend, WrapSpec

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


async def _run_backend(backend: Backend, spec: WrapSpec, prelaunch: Prelaunch) -> int:
    if prelaunch.bwrap is not None:
        return await supervise_bwrap(prelaunch.bwrap, spec)
    if backend == "process":
        return await run_process(spec)
    return await run_container(backend, spec, prelaunch.netns_helper)


async def wrap(
    backend: Backend,
    spec: WrapSpec,
    prelaunch: Prelaunch | None = None,
    early_signals: Sequence[int] = (),
) -> int:
    """Run the sandbox until the command exits (its status) or SIGINT/SIGTERM/SIGHUP arrive
    (the command is stopped, everything reaped, status 128 + signal number: 130 for SIGINT).
    `early_signals` arrived before Trio was running (bwrap starts first)."""
    prelaunch = prelaunch or Prelaunch()
    helper = prelaunch.netns_helper or (prelaunch.bwrap.netns_helper if prelaunch.bwrap else None)
    received = list(early_signals)
    failures: list[str] = []
    status = 0
    try:
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async with trio.open_nursery() as nursery:
                backend_scope = trio.CancelScope()
                if received:
                    backend_scope.cancel()

                async def watch_signals() -> None:
                    async for signum in signals:
                        received.append(signum)
                        backend_scope.cancel()
                        return

                nursery.start_soon(watch_signals)
                if helper is not None:
                    nursery.start_soon(_stop_if_gone, helper.pid, backend_scope, failures)
                with backend_scope:
                    status = await _run_backend(backend, spec, prelaunch)
                nursery.cancel_scope.cancel()
    finally:
        if helper is not None:
            helper.close()
    if failures:
        print(f"trio-sandbox-warden: error: {failures[0]}", file=sys.stderr, flush=True)
        return WARDEN_ERROR_STATUS
    if received:
        return 128 + received[0]
    return 128 - status if status < 0 else status


async def _stop_if_gone(pid: int, scope: trio.CancelScope, failures: list[str]) -> None:
    """Without its namespace helper the warden cannot reach into the sandbox any more: stop it,
    so that whoever runs the warden starts a new one."""
    pidfd = os.pidfd_open(pid)
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        trio.lowlevel.notify_closing(pidfd)
        os.close(pidfd)
    failures.append("the namespace helper died: the sandbox's ports cannot be reached any more")
    scope.cancel()
