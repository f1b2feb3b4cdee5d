"""SIGINT/SIGTERM that arrive before Trio runs: recorded, then honoured as soon as it does.

Standard library only: installed first thing, while the rest of the command line still loads.
"""

from __future__ import annotations

import signal
from types import FrameType

received: list[int] = []


def _record(signum: int, _frame: FrameType | None) -> None:
    received.append(signum)


def record_early_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _record)
