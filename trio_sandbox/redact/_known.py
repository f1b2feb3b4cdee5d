"""Known secret values, found in a text by exact comparison; adding one costs its own length.

Every known value has at least :data:`MIN_KNOWN_SECRET_LENGTH` characters. The index keys each
value by its ``_GRAM``-character pieces at offsets ``0 .. _STRIDE - 1`` (``_STRIDE`` entries per
value, whatever the number of values); a text is looked up at every ``_STRIDE``-th position only.
An occurrence at ``p`` spans ``p .. p + 7`` at least, and exactly one looked-up position ``j``
lies in ``p .. p + _STRIDE - 1``, where the piece ``text[j : j + _GRAM]`` is still inside the
occurrence (``_STRIDE - 1 + _GRAM <= MIN_KNOWN_SECRET_LENGTH``): its piece at offset ``j - p``
names the value, which is then compared whole in place. So each occurrence is found exactly
once, with no automaton to rebuild: a value is added (or removed) by touching its own entries.

The previous index (one regex per anchor character over every value, rebuilt when one was added)
made a session quadratic: each generated password rebuilt the index of all before it.
"""

from __future__ import annotations

from collections.abc import Generator
from itertools import compress
from typing import Final

import attrs

MIN_KNOWN_SECRET_LENGTH: Final = 8
_GRAM: Final = 4
_STRIDE: Final = MIN_KNOWN_SECRET_LENGTH - _GRAM + 1
# Positions looked up between two yields of a scan (a multiple of the stride, so the positions
# of each window continue those of the last).
_WINDOW: Final = _STRIDE * 16 * 1024


@attrs.define(eq=False)
class KnownIndex:
    """Known values (each at least :data:`MIN_KNOWN_SECRET_LENGTH` characters) and the rule
    naming each; :meth:`occurrences` finds them (also overlapping ones) in a text."""

    _rules: dict[str, str] = attrs.field(init=False, factory=dict)  # value -> rule
    # piece -> (value, the piece's offset in it)
    _by_gram: dict[str, list[tuple[str, int]]] = attrs.field(init=False, factory=dict)

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, value: object) -> bool:
        return value in self._rules

    def rule(self, value: str) -> str:
        return self._rules[value]

    def add(self, value: str, rule: str) -> bool:
        """Index ``value`` under ``rule``; False (nothing changes) if it is known already."""
        if len(value) < MIN_KNOWN_SECRET_LENGTH:
            raise ValueError(f"a known value has at least {MIN_KNOWN_SECRET_LENGTH} characters")
        if value in self._rules:
            return False
        self._rules[value] = rule
        for offset in range(_STRIDE):
            self._by_gram.setdefault(value[offset : offset + _GRAM], []).append((value, offset))
        return True

    def remove(self, value: str) -> bool:
        """Forget ``value``; False if it was not known."""
        if self._rules.pop(value, None) is None:
            return False
        for offset in range(_STRIDE):
            gram = value[offset : offset + _GRAM]
            entries = [entry for entry in self._by_gram[gram] if entry != (value, offset)]
            if entries:
                self._by_gram[gram] = entries
            else:
                del self._by_gram[gram]
        return True

    def occurrences(self, text: str) -> Generator[None, None, list[tuple[int, str]]]:
        """Every ``(start, value)`` of a known value in ``text``, sorted (a generator that yields
        between bounded steps and returns the list)."""
        by_gram = self._by_gram
        found: list[tuple[int, str]] = []
        last = len(text) - _GRAM + 1  # positions where a whole piece can be read
        for low in range(0, max(last, 0), _WINDOW):
            positions = range(low, min(low + _WINDOW, last), _STRIDE)
            ends = range(low + _GRAM, low + _WINDOW + _GRAM, _STRIDE)
            pieces = map(text.__getitem__, map(slice, positions, ends))
            # Only the positions whose piece is some value's (rare in ordinary text) are looked
            # at again, in Python.
            for position in compress(positions, map(by_gram.__contains__, pieces)):
                for value, offset in by_gram[text[position : position + _GRAM]]:
                    start = position - offset
                    if start >= 0 and text.startswith(value, start):
                        found.append((start, value))
            yield
        found.sort()
        return found
