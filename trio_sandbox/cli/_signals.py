"""The CLI's answer to stop signals, in every phase of a command: the first stops the command
(the warden is stopped within ``stop_grace``), a second exits at once with status 130.

The running itself is :func:`trio_sandbox.concurrency.run_until_signalled`.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

from ..concurrency import run_until_signalled
from ..program import exit_now

T = TypeVar("T")


def say(message: str) -> None:
    print(f"trio-sandbox: {message}", file=sys.stderr, flush=True)


async def stop_on_signals(
    main: Callable[[], Awaitable[T]], *, announce: Callable[[str], None] = say
) -> T | None:
    """``await main()``, or stop it at the first SIGINT/SIGTERM; None when a signal stopped it.

    A second signal during the stop exits at once with status 130.
    """

    def stopping(signum: int) -> None:
        announce(f"{signal.Signals(signum).name}: shutting down")

    def exit_at_once(signum: int) -> NoReturn:
        # Do not wait for the orderly stop. The warden notices that its parent is gone and
        # stops the sandbox on its own (the lifeline).
        announce(f"{signal.Signals(signum).name} again: exiting now")
        exit_now(130)

    return await run_until_signalled(main, on_signal=stopping, on_again=exit_at_once)
