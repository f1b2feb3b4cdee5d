"""Find every occurrence of many fixed strings in a text in few passes of the ``re`` engine.

(The pure-Python fallback of ``_prefilter``: where Hyperscan is installed, it does this.)

gitleaks prefilters its ~220 rules on ~240 keywords with Aho-Corasick; the standard library has
no multi-string search, and 240 ``str.find`` passes cost about 0.8 ms per MiB each. Python's
regex engine skips quickly (about 1 ns a character) to the next occurrence of a pattern's first
*literal character*, and pays about 30-60 ns for each place where that character occurs. So each
string is *anchored* at one of its characters, chosen to be rare in ordinary output, and strings
sharing an anchor character become one pattern: the anchor, then a look-ahead holding a trie of
what follows it (and, when the anchor is not the first character, look-behinds for what comes
before it), each branch ending in an empty marker group that names the string. A handful of
anchor characters (a greedy set cover weighing the cost of a pass against how often the
character occurs) serve all the strings.

The pattern consumes only the anchor character, so overlapping occurrences are all visited. At
one anchor position the engine reports the first string that matches; strings that can occur at
the same position as that one are then added (contained in it) or checked (overlapping it).
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable, Sequence
from typing import Final

import attrs

# Rough frequencies (per thousand characters) of ASCII characters in lower-cased tool output:
# logs, code, JSON, paths, hex and base64. Characters not listed count as rare (0.5).
_FREQUENCY: Final = {
    " ": 140, "e": 70, "t": 50, "a": 50, "o": 45, "i": 45, "s": 45, "n": 45, "r": 40,
    "l": 30, "c": 28, "d": 28, "0": 25, "1": 25, "\n": 25, "u": 20, "p": 20, "m": 20,
    "h": 18, "f": 18, "2": 18, ".": 18, "/": 16, "-": 14, "3": 14, "4": 12, "5": 12, "6": 12,
    "7": 12, "8": 12, "9": 12, "g": 12, "b": 12, "y": 10, "w": 9, "_": 8, ":": 8, '"': 8,
    "k": 7, "v": 7, "=": 5, ",": 5, "x": 4, "(": 3, ")": 3, "'": 3, "j": 2, "q": 1.5,
    "z": 1.5, "[": 1.5, "]": 1.5, "{": 1, "}": 1, ";": 1, "+": 1, "\t": 1,
}  # fmt: skip
# One more pass over the text costs about as much as visiting 2 % of its characters.
_PASS_COST: Final = 20.0
_RARE: Final = 0.5
# Work between two yields of a scan: characters searched in one pass, hits handled.
_WINDOW: Final = 64 * 1024
_HITS_PER_STEP: Final = 512


def _frequency(char: str, case_sensitive: bool) -> float:
    if case_sensitive and char != char.lower():
        # An upper-case letter is much rarer than its lower-case form in ordinary output.
        return _FREQUENCY.get(char.lower(), _RARE) / 8
    return _FREQUENCY.get(char, _RARE)


# _frequency(char, True) of the characters the table has, and of their upper-case forms.
_CASED_FREQUENCY: Final = {
    **_FREQUENCY,
    **{char.upper(): rate / 8 for char, rate in _FREQUENCY.items() if char.upper() != char},
}


def cased_frequencies(text: str) -> list[float]:
    """``_frequency(char, True)`` of each character of ``text``, looked up at C speed for the
    characters of the table (the rest, rare, are worked out)."""
    get = _CASED_FREQUENCY.get
    return [
        frequency if (frequency := get(char)) is not None else _frequency(char, True)
        for char in text
    ]


@attrs.frozen
class _AnchorSearch:
    """All strings anchored at one character: one regex pass finds them."""

    pattern: re.Pattern[str]
    # Per marker group number: (string index, offset of the anchor in it).
    markers: dict[int, tuple[int, int]]
    # Per string index: strings that also occur at the same anchor position, as
    # (string index, start relative to this string's start, needs a check).
    companions: dict[int, tuple[tuple[int, int, bool], ...]]


@attrs.frozen
class StringIndex:
    """Finds all (also overlapping) occurrences of ``strings`` in a text.

    ``case_sensitive=False`` means the strings are lower-case and the text searched is the
    lower-cased text."""

    strings: tuple[str, ...]
    searches: tuple[_AnchorSearch, ...]

    @classmethod
    def build(cls, strings: Iterable[str], *, case_sensitive: bool) -> StringIndex:
        unique = tuple(dict.fromkeys(s for s in strings if s))
        anchors = _choose_anchors(unique, case_sensitive=case_sensitive)
        groups: dict[str, list[tuple[int, int]]] = {}
        for index, anchor in enumerate(anchors):
            groups.setdefault(unique[index][anchor], []).append((index, anchor))
        searches = tuple(_anchor_search(char, members, unique) for char, members in groups.items())
        return cls(unique, searches)

    def occurrences(self, text: str) -> Generator[None, None, list[list[int]]]:
        """Start offsets of each string in `text`, sorted, one list per string (a generator
        that yields between bounded steps and returns the lists)."""
        starts: list[list[int]] = [[] for _ in self.strings]
        strings = self.strings
        reach = max(map(len, strings), default=0)
        for search in self.searches:
            markers = search.markers
            companions = search.companions
            # Windows of anchor positions; the look-ahead may read `reach` characters past one.
            for low in range(0, len(text), _WINDOW):
                high = low + _WINDOW
                matches = search.pattern.finditer(text, low, high + reach)
                for hits, match in enumerate(matches, 1):
                    if match.start() >= high:
                        break
                    index, anchor = markers[match.lastindex or 0]
                    start = match.start() - anchor
                    starts[index].append(start)
                    for other, offset, check in companions.get(index, ()):
                        if not check or text.startswith(strings[other], start + offset):
                            starts[other].append(start + offset)
                    if hits % _HITS_PER_STEP == 0:
                        yield
                yield
        return starts


def _choose_anchors(strings: Sequence[str], *, case_sensitive: bool) -> list[int]:
    """For each string, the offset of the character it is anchored at (greedy set cover)."""
    anchors = [-1] * len(strings)
    uncovered = set(range(len(strings)))
    chosen: set[str] = set()
    while uncovered:
        candidates = {char for index in uncovered for char in strings[index]}

        def value(char: str) -> tuple[float, str]:
            covered = sum(1 for index in uncovered if char in strings[index])
            cost = _frequency(char, case_sensitive) + (0 if char in chosen else _PASS_COST)
            return covered / cost, char

        best = max(candidates, key=value)
        chosen.add(best)
        for index in [i for i in uncovered if best in strings[i]]:
            # The anchor's first occurrence: the rest of the string follows in the look-ahead.
            anchors[index] = strings[index].index(best)
            uncovered.discard(index)
    return anchors


@attrs.define(eq=False)
class _TrieNode:
    children: dict[str, _TrieNode] = attrs.Factory(dict)
    # (string index, anchor offset) of the strings whose path ends at this node.
    ends: list[tuple[int, int]] = attrs.Factory(list)

    def add(self, path: str, member: tuple[int, int]) -> None:
        node = self
        for char in path:
            node = node.children.setdefault(char, _TrieNode())
        node.ends.append(member)


def _anchor_search(
    char: str, members: Sequence[tuple[int, int]], strings: Sequence[str]
) -> _AnchorSearch:
    """``c(?=AFTER...|(?<=[x]c)BEFORE...)``. A trie of what follows the anchor lets the engine
    reject most places with quick character compares; each branch ends in a look-behind for what
    comes before the anchor, if anything. Strings that end with their anchor have nothing after
    it: a trie of look-behinds over what precedes it (nearest character first, behind one
    character-class guard) serves them."""
    markers: dict[int, tuple[int, int]] = {}
    order: list[tuple[int, int]] = []  # strings in the order the engine tries them
    anchor = re.escape(char)

    def leaf(member: tuple[int, int], behind: str) -> str:
        markers[len(markers) + 1] = member
        order.append(member)
        return behind + "()"

    def after(node: _TrieNode) -> list[str]:
        branches = [
            re.escape(c) + _group(after(child)) for c, child in sorted(node.children.items())
        ]
        for index, offset in node.ends:
            text = strings[index]
            behind = f"(?<={re.escape(text)})" if offset else ""
            branches.append(leaf((index, offset), behind))
        return branches

    def before(node: _TrieNode, behind: str) -> list[str]:
        branches = [
            f"(?<={re.escape(c + behind)}{anchor})" + _group(before(child, c + behind))
            for c, child in sorted(node.children.items())
        ]
        branches.extend(leaf(member, "") for member in node.ends)
        return branches

    ahead_root = _TrieNode()
    behind_root = _TrieNode()
    for index, offset in members:
        text = strings[index]
        if offset == len(text) - 1 and offset:
            behind_root.add(text[:offset][::-1], (index, offset))
        else:
            ahead_root.add(text[offset + 1 :], (index, offset))
    # One look-ahead just after the anchor; look-behinds inside it see what precedes it.
    branches = after(ahead_root)
    if behind_root.children:
        guard = "".join(sorted(re.escape(c) for c in behind_root.children))
        branches.append(f"(?<=[{guard}]{anchor})" + _group(before(behind_root, "")))
    pattern = re.compile(anchor + "(?=" + "|".join(branches) + ")", re.DOTALL)
    return _AnchorSearch(pattern, markers, _companions(order, strings))


def _group(branches: Sequence[str]) -> str:
    return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"


def _companions(
    order: Sequence[tuple[int, int]], strings: Sequence[str]
) -> dict[int, tuple[tuple[int, int, bool], ...]]:
    """For each string, the later-tried strings that can occur at the same anchor position."""
    result: dict[int, tuple[tuple[int, int, bool], ...]] = {}
    for position, (index, anchor) in enumerate(order):
        text = strings[index]
        found = []
        for other, other_anchor in order[position + 1 :]:
            other_text = strings[other]
            offset = anchor - other_anchor  # the other string's start, relative to this one's
            overlap = range(max(0, offset), min(len(text), offset + len(other_text)))
            if all(text[i] == other_text[i - offset] for i in overlap):
                contained = offset >= 0 and offset + len(other_text) <= len(text)
                found.append((other, offset, not contained))
        if found:
            result[index] = tuple(found)
    return result
