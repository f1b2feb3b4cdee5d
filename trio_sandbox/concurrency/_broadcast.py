"""One value many tasks watch: the shape of trio-util's ``AsyncValue``, typed.

Health, an upstream's state, the aggregated listing, the supervisor's generation and an SSE
stream's sequence number all are "a value, and wake whoever waits for it to change". Each used
to replace a ``trio.Event`` by hand; this is that pattern once. (trio-util itself ships no type
information, so under ``mypy --strict`` its values would be ``Any``.)
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class AsyncValue(Generic[T]):
    """A value whose changes wake waiters. Setting an equal value is not a change."""

    __slots__ = ("_changed", "_value")

    def __init__(self, value: T) -> None:
        self._value = value
        self._changed = trio.Event()

    @property
    def value(self) -> T:
        return self._value

    @value.setter
    def value(self, value: T) -> None:
        if value == self._value:
            return
        self._value = value
        # A new Event for the next change: tasks parked on this one all wake now.
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    async def wait_value(self, predicate: Callable[[T], bool]) -> T:
        """The value, once ``predicate`` holds for it (at once if it already does)."""
        while not predicate(self._value):
            await self._changed.wait()
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._value

    async def wait_change(self) -> T:
        """The next value it is set to (values set in between may be skipped)."""
        await self._changed.wait()
        return self._value

    async def eventual_values(self) -> AsyncGenerator[T, None]:
        """The current value, then the latest one after each change (a slow reader skips)."""
        while True:
            seen = self._value
            yield seen
            if self._value == seen:
                await self._changed.wait()
