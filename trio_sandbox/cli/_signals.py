"""Stopping on SIGINT or SIGTERM in every phase of a command: before, during and after start-up.

The receiver is open before the command's first await, and watched by its own task, so a signal
that comes while a sandbox is still starting cancels the start (the warden is stopped within
``stop_grace``) instead of waiting for the start to end.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from ..concurrency import single_error
from . import _early_signals as early_signals

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def say(message: str) -> None:
    print(f"trio-sandbox: {message}", file=sys.stderr, flush=True)


async def run_until_signalled(
    main: Callable[[], Awaitable[T]], *, announce: Callable[[str], None] = say
) -> T | None:
    """``await main()``, or stop it at the first SIGINT/SIGTERM; None when a signal stopped it."""
    result: list[T] = []
    if early_signals.received:
        announce(f"{signal.Signals(early_signals.received[0]).name}: shutting down")
        return None
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals, single_error():
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    announce(f"{signal.Signals(signum).name}: shutting down")
                    nursery.cancel_scope.cancel()
                    return

            async def run_main() -> None:
                result.append(await main())
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            nursery.start_soon(run_main)
    return result[0] if result else None
