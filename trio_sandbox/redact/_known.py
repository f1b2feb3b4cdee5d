"""Known secret values, found in a text by exact comparison; adding one costs its own length.

Each value is *anchored* at its rarest character in ordinary tool output (the frequencies of
:mod:`._keywords`; an upper-case letter counts rarer than its lower-case form) and keyed by the
four characters around that anchor. One regex pass over the text (a character class of every
anchor in use: the engine skips the rest at about 1 ns a character) stops only where an anchor
character stands; there a dict lookup of the four characters around it names the values that
may start nearby, and each is compared whole in place. Adding a value touches its own entries
and, when its anchor is new, the character class (bounded by the alphabet): nothing is rebuilt
over the values known before.

The index it replaces (one regex trie over every value, rebuilt when a value was added) made a
session quadratic: each generated password rebuilt the index of all the passwords before it.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Final

import attrs

from ._errors import MIN_KNOWN_SECRET_LENGTH
from ._keywords import cased_frequencies

# Characters of a value, around its anchor, that key it (every value has at least this many).
_KEY: Final = 4
# Text searched between two yields of a scan, and anchor hits handled.
_WINDOW: Final = 64 * 1024
_HITS_PER_STEP: Final = 512


@attrs.frozen
class _Anchor:
    """Where ``value`` is keyed: its character at ``offset``, and ``key`` (its ``_KEY``
    characters from ``offset + shift``; ``shift`` is 0, or negative near the value's end)."""

    char: str
    offset: int
    shift: int
    key: str

    @classmethod
    def of(cls, value: str) -> _Anchor:
        # The rarest character, then the smallest, then the first: compared as tuples, in C.
        _, _, offset = min(zip(cased_frequencies(value), value, range(len(value)), strict=True))
        start = min(offset, len(value) - _KEY)
        return cls(value[offset], offset, start - offset, value[start : start + _KEY])


@attrs.define(eq=False)
class KnownIndex:
    """Known values (each at least :data:`MIN_KNOWN_SECRET_LENGTH` characters) and the rule
    naming each; :meth:`occurrences` finds them (also overlapping ones) in a text."""

    _rules: dict[str, str] = attrs.field(init=False, factory=dict)  # value -> rule
    _anchors: dict[str, _Anchor] = attrs.field(init=False, factory=dict)  # value -> its anchor
    # anchor character -> shift -> key -> (value, anchor offset in it)
    _entries: dict[str, dict[int, dict[str, list[tuple[str, int]]]]] = attrs.field(
        init=False, factory=dict
    )
    # The character class of every anchor in use; None: to be made again (one was added).
    _pattern: re.Pattern[str] | None = attrs.field(init=False, default=None)

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
        anchor = _Anchor.of(value)
        if anchor.char not in self._entries:
            self._pattern = None
        shifts = self._entries.setdefault(anchor.char, {})
        shifts.setdefault(anchor.shift, {}).setdefault(anchor.key, []).append(
            (value, anchor.offset)
        )
        self._rules[value] = rule
        self._anchors[value] = anchor
        return True

    def remove(self, value: str) -> bool:
        """Forget ``value``; False if it was not known."""
        anchor = self._anchors.pop(value, None)
        if anchor is None:
            return False
        del self._rules[value]
        shifts = self._entries[anchor.char]
        keys = shifts[anchor.shift]
        keys[anchor.key].remove((value, anchor.offset))
        if not keys[anchor.key]:
            del keys[anchor.key]
            if not keys:
                del shifts[anchor.shift]
                if not shifts:
                    del self._entries[anchor.char]
                    self._pattern = None
        return True

    def occurrences(
        self, text: str, *, overlapping: bool = True
    ) -> Generator[None, None, list[tuple[int, str]]]:
        """Every ``(start, value)`` of a known value in ``text``, sorted (a generator that yields
        between bounded steps and returns the list); ``overlapping=False`` leaves out an
        occurrence that starts inside the one before of the same value (a value of one
        repeated character in a long run of it is then a few, not one per character)."""
        found: list[tuple[int, str]] = []
        reach: dict[str, int] = {}  # value -> where its last occurrence ends
        if not self._entries:
            return found
        if self._pattern is None:
            anchors = "".join(sorted(re.escape(char) for char in self._entries))
            self._pattern = re.compile(f"[{anchors}]")
        pattern = self._pattern
        entries = self._entries
        for low in range(0, len(text), _WINDOW):
            matches = pattern.finditer(text, low, low + _WINDOW)
            for hits, match in enumerate(matches, 1):
                at = match.start()
                # (.get: a value removed while a scan was paused may have taken its anchor along.)
                for shift, keys in entries.get(text[at], {}).items():
                    start = at + shift
                    if start < 0:
                        continue
                    for value, offset in keys.get(text[start : start + _KEY], ()):
                        begin = at - offset
                        if begin >= 0 and text.startswith(value, begin):
                            if not overlapping:
                                if begin < reach.get(value, 0):
                                    continue
                                reach[value] = begin + len(value)
                            found.append((begin, value))
                if hits % _HITS_PER_STEP == 0:
                    yield
            yield
        found.sort()
        return found
