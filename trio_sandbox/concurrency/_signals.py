"""The one signal runner: run a task until a stop signal, in every phase of a process's life.

The receiver is open before ``main``'s first await and watched by its own task, so a signal that
comes while ``main`` is still starting cancels it instead of waiting for the start to end; one
recorded before Trio ran (:func:`record_early_signals`) stops ``main`` before it starts.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, TypeVar

import trio

from ._early_signals import STOP_SIGNALS, early_signals
from ._groups import single_error

T = TypeVar("T")

SignalHandler = Callable[[int], None]


def _ignore(_signum: int) -> None:
    pass


async def run_until_signalled(
    main: Callable[[], Awaitable[T]],
    *,
    on_signal: SignalHandler = _ignore,
    on_again: SignalHandler = _ignore,
    signals: Sequence[signal.Signals] = STOP_SIGNALS,
    early: Literal["skip", "cancel"] = "skip",
) -> T | None:
    """``await main()``, or cancel it at the first of ``signals``; None when a signal stopped it.

    ``on_signal`` is told of the signal that stops ``main`` (one recorded early included), and
    ``on_again`` of every further one while ``main`` winds down (say, to exit at once). A signal
    recorded before Trio ran skips ``main`` (``early="skip"``), or starts it already cancelled
    (``early="cancel"``: for a ``main`` that must still clean up what was started before Trio,
    such as the warden's sandbox).
    """
    recorded = [signum for signum in early_signals() if signum in signals]
    if recorded:
        on_signal(recorded[0])
        if early == "skip":
            return None
    result: list[T] = []
    with trio.open_signal_receiver(*signals) as received, single_error():
        async with trio.open_nursery() as nursery:
            main_scope = trio.CancelScope()

            async def stop_on_signal() -> None:
                async for signum in received:
                    if main_scope.cancel_called:
                        on_again(signum)
                        continue
                    on_signal(signum)
                    main_scope.cancel()

            nursery.start_soon(stop_on_signal)
            if recorded:
                main_scope.cancel()
            with main_scope:
                result.append(await main())
            nursery.cancel_scope.cancel()
    return result[0] if result else None
