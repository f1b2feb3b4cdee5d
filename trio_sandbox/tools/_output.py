"""Bounded capture of command output: the tail is kept, and the dropped head is counted."""

from __future__ import annotations

import attrs


@attrs.define(eq=False)
class TailBuffer:
    """The last ``limit`` bytes fed to it, and how many bytes before them were dropped."""

    limit: int
    _data: bytearray = attrs.field(factory=bytearray)
    dropped_bytes: int = 0

    def feed(self, chunk: bytes) -> None:
        self._data += chunk
        excess = len(self._data) - self.limit
        if excess > 0:
            # Deleting from the front of a bytearray is cheap in CPython (it keeps an offset).
            del self._data[:excess]
            self.dropped_bytes += excess

    @property
    def total_bytes(self) -> int:
        return self.dropped_bytes + len(self._data)

    @property
    def kept(self) -> bytes:
        return bytes(self._data)

    def render(self) -> str:
        """The kept output as text, preceded by a note when the head was dropped."""
        text = self._data.decode("utf-8", errors="replace")
        if self.dropped_bytes == 0:
            return text
        return (
            f"[output truncated: the first {self.dropped_bytes} bytes were dropped;"
            f" showing the last {len(self._data)} of {self.total_bytes} bytes]\n{text}"
        )
