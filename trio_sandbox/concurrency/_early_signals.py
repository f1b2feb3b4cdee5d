"""Stop signals that arrive before Trio runs: recorded, then honoured as soon as it does.

Standard library only: a process installs this first thing, while the rest of it still loads
(the CLI before its commands, the warden while bubblewrap boots), and
:func:`~trio_sandbox.concurrency.run_until_signalled` reads what it recorded.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from types import FrameType
from typing import Final

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)

# The one record of the process: a signal handler can only reach module state.
_received: list[int] = []


def _record(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)


def record_early_signals(signums: Iterable[int] = STOP_SIGNALS) -> list[int]:
    """From now until Trio opens its own receiver, ``signums`` are only recorded: the list
    returned (the process's one record, emptied here) fills in the order they arrive."""
    _received.clear()
    for signum in signums:
        signal.signal(signum, _record)
    return _received


def early_signals() -> tuple[int, ...]:
    """The stop signals recorded so far."""
    return tuple(_received)
