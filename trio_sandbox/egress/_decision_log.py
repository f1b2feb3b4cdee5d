"""The proxy's log of its decisions, bounded whatever the sandbox asks for.

One line per decision let a sandbox that sent refused requests in a loop make the proxy (and the
host that read its lines) write tens of thousands of lines. Here a line is written the first time
it occurs in a window (so a person watching sees it at once); repeats are only counted and summed
up in one line when the window ends; past ``max_lines`` distinct lines in a window, decisions are
only counted, and one line at the window's end says how many went unlisted. So at most
``2 * max_lines + 1`` lines per window, and each decision costs a dictionary update.

:class:`Windows` is the clock of that bound, shared with the connection records
(:mod:`._connections`): a window opens with the first event after the last one closed, and
closes ``length`` seconds later (or as its service is cancelled).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

import attrs
import trio

from ..concurrency import AsyncValue

DEFAULT_WINDOW: Final = 1.0
DEFAULT_MAX_LINES: Final = 20


@attrs.define(eq=False)
class Windows:
    """Call :meth:`open` per event; run :meth:`serve` to have ``on_close`` called as each
    window ends (and for the last one when cancelled). No event: no window, no wake-up."""

    length: float
    on_close: Callable[[], None]
    # The current window's end (inf: no window open).
    _ends_at: AsyncValue[float] = attrs.field(factory=lambda: AsyncValue(math.inf))

    def open(self) -> None:
        if self._ends_at.value == math.inf:
            self._ends_at.value = trio.current_time() + self.length

    def close(self) -> None:
        """End the current window now (``on_close`` runs even if none is open)."""
        self._ends_at.value = math.inf
        self.on_close()

    async def serve(self) -> None:
        try:
            while True:
                ends_at = await self._ends_at.wait_value(lambda end: end != math.inf)
                await trio.sleep_until(ends_at)
                self.close()
        finally:
            if self._ends_at.value != math.inf:
                self.close()


@attrs.define(eq=False)
class DecisionLog:
    """Call :meth:`add` per decision; run :meth:`serve` to write the windows' summaries."""

    write: Callable[[str], None]
    window: float = DEFAULT_WINDOW
    max_lines: int = DEFAULT_MAX_LINES
    # The current window's lines with their repeats, and the decisions past max_lines.
    _repeats: dict[str, int] = attrs.field(factory=dict)
    _unlisted: int = 0
    _windows: Windows = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._windows = Windows(self.window, self._summarise)

    def add(self, line: str) -> None:
        self._windows.open()
        if line in self._repeats:
            self._repeats[line] += 1
        elif len(self._repeats) < self.max_lines:
            self._repeats[line] = 0
            self.write(line)
        else:
            self._unlisted += 1

    def close_window(self) -> None:
        """Write the window's summary lines and start afresh."""
        self._windows.close()

    def _summarise(self) -> None:
        span = f"in the last {self.window:g} s"
        for line, repeats in self._repeats.items():
            if repeats:
                self.write(f"{line} and {repeats} more time(s) {span}")
        if self._unlisted:
            self.write(f"and {self._unlisted} more decision(s) {span} (not listed one by one)")
        self._repeats.clear()
        self._unlisted = 0

    async def serve(self) -> None:
        """Close each window when it ends (and the last one when cancelled)."""
        await self._windows.serve()
