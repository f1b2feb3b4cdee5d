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

from ..concurrency import exit_now, single_error
from . import _early_signals as early_signals

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def say(message: str) -> None:
    print(f"trio-sandbox: {message}", file=sys.stderr, flush=True)


async def run_until_signalled(
    main: Callable[[], Awaitable[T]], *, announce: Callable[[str], None] = say
) -> T | None:
    """``await main()``, or stop it at the first SIGINT/SIGTERM; None when a signal stopped it.

    A second signal during the stop exits at once with status 130.
    """
    result: list[T] = []
    if early_signals.received:
        announce(f"{signal.Signals(early_signals.received[0]).name}: shutting down")
        return None
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals, single_error():
        async with trio.open_nursery() as nursery:
            main_scope = trio.CancelScope()

            async def stop_on_signal() -> None:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if not main_scope.cancel_called:
                        announce(f"{name}: shutting down")
                        main_scope.cancel()
                        continue
                    # A second one: do not wait for the orderly stop. The warden notices that
                    # its parent is gone and stops the sandbox on its own (the lifeline).
                    announce(f"{name} again: exiting now")
                    exit_now(130)

            nursery.start_soon(stop_on_signal)
            with main_scope:
                result.append(await main())
            nursery.cancel_scope.cancel()
    return result[0] if result else None
