"""The warden's Trio side: run the chosen back end until the command exits or a signal."""

from __future__ import annotations

import signal
from collections.abc import Sequence

import trio

from ._bwrap import LaunchedBwrap
from ._bwrap_run import supervise_bwrap
from ._container import run_container
from ._process import run_process
from ._spec import Backend, WrapSpec

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


async def _run_backend(backend: Backend, spec: WrapSpec, launched: LaunchedBwrap | None) -> int:
    if launched is not None:
        return await supervise_bwrap(launched, spec)
    if backend == "process":
        return await run_process(spec)
    return await run_container(backend, spec)


async def wrap(
    backend: Backend,
    spec: WrapSpec,
    launched: LaunchedBwrap | None = None,
    early_signals: Sequence[int] = (),
) -> int:
    """Run the sandbox until the command exits (its status) or SIGINT/SIGTERM/SIGHUP arrive
    (the command is stopped, everything reaped, status 128 + signal number: 130 for SIGINT).
    `early_signals` arrived before Trio was running (bwrap starts first)."""
    received = list(early_signals)
    status = 0
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
            with backend_scope:
                status = await _run_backend(backend, spec, launched)
            nursery.cancel_scope.cancel()
    if received:
        return 128 + received[0]
    return 128 - status if status < 0 else status
