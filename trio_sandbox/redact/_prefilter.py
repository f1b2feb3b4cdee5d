"""Where each of the rules' literals occurs in a text, the case of ASCII letters ignored.

The literals are the rules' keywords (a rule runs only where one occurs) and the strings a rule's
matches start with (it is tried only there). Two engines find the same occurrences:

- **Hyperscan**, one database of every literal, caseless, compiled in a few milliseconds (no
  cache). Hyperscan matches bytes, so the text is encoded to ASCII with ``?`` for every other
  character: one byte per character, so a byte offset is a character offset (CPython fills the
  replacements in C, without calling an error handler). A literal that is ASCII without ``?``
  then matches exactly where it occurs in :func:`lower_aligned` text, which lowers ASCII letters
  only: the Kelvin sign, whose ``lower()`` is ``k``, is no ``k`` in either.
- **The pure-Python** :class:`StringIndex` over :func:`lower_aligned` text, for the platforms
  Hyperscan has no wheel for (Linux other than x86_64 and aarch64, such as ppc64le, s390x or
  32-bit ARM), or literals Hyperscan cannot take so (not ASCII, or holding ``?``).

Both yield between bounded steps and return the sorted start offsets of each literal that
occurs, by its index (a dict: a scan of a short text allocates nothing per literal absent).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Final, Protocol

import attrs

from ._keywords import StringIndex

if TYPE_CHECKING:
    import hyperscan

logger = logging.getLogger("trio_sandbox.redact")

# Characters of text searched by Hyperscan between two yields of a scan.
_WINDOW: Final = 32 * 1024


class LiteralSearch(Protocol):
    """Finds every (also overlapping) occurrence of each of ``strings`` (lower-case) in a text,
    the case of ASCII letters ignored."""

    @property
    def strings(self) -> tuple[str, ...]: ...

    def occurrences(self, text: str) -> Generator[None, None, dict[int, list[int]]]:
        """Start offsets of each string in ``text``, sorted, by the string's index (only the
        strings that occur)."""
        ...


def lower_aligned(text: str) -> str:
    """``text`` with ASCII letters lower-cased and every character at its own offset (keywords
    are ASCII; other characters only need to stay where they are)."""
    if text.isascii():
        return text.lower()
    # bytes.lower() touches ASCII bytes only, and in UTF-16 an ASCII character is the only code
    # unit with a zero high byte: other characters stay non-ASCII. Twice as fast as str.lower().
    lowered = text.encode("utf-16-le", "surrogatepass").lower()
    aligned = lowered.decode("utf-16-le", "surrogatepass")
    if len(aligned) == len(text):
        return aligned
    return text.translate(_ASCII_LOWER)  # lone surrogates that paired up on the way


_ASCII_LOWER: Final = {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}


@attrs.frozen
class PythonSearch:
    """The pure-Python engine: :class:`StringIndex` passes over the lower-cased text."""

    index: StringIndex

    @property
    def strings(self) -> tuple[str, ...]:
        return self.index.strings

    def occurrences(self, text: str) -> Generator[None, None, dict[int, list[int]]]:
        found = yield from self.index.occurrences(lower_aligned(text))
        return {index: starts for index, starts in enumerate(found) if starts}


@attrs.define(eq=False)
class HyperscanSearch:
    """The Hyperscan engine (see the module's docstring). One scratch space per thread: a
    detector is shared by every redactor of its rule set, and a scan must not share one."""

    strings: tuple[str, ...]
    _database: hyperscan.Database
    _longest: int
    _local: threading.local = attrs.field(factory=threading.local)
    _lengths: list[int] = attrs.field(init=False)

    @_lengths.default
    def _lengths_of_strings(self) -> list[int]:
        return [len(string) for string in self.strings]

    def occurrences(self, text: str) -> Generator[None, None, dict[int, list[int]]]:
        starts: defaultdict[int, list[int]] = defaultdict(list)
        lengths = self._lengths
        data = text.encode("ascii", "replace")
        scratch = self._scratch()
        scan = self._database.scan
        for low in range(0, len(data), _WINDOW):
            # Each window reaches far enough for an occurrence that starts in it to end in it;
            # one that starts in the reach belongs to the next window.
            def found(
                index: int,
                _from: int,
                to: int,
                _flags: int,
                _context: object,
                low: int = low,
                high: int = low + _WINDOW,
            ) -> None:
                start = low + to - lengths[index]
                if start < high:
                    starts[index].append(start)

            window = data[low : low + _WINDOW + self._longest - 1]
            scan(window, match_event_handler=found, scratch=scratch)
            yield
        return dict(starts)

    def _scratch(self) -> hyperscan.Scratch:
        import hyperscan

        scratch: hyperscan.Scratch | None = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._database)
        return scratch


def literal_search(strings: Iterable[str], *, pure_python: bool = False) -> LiteralSearch:
    """The fastest engine that finds ``strings`` (lower-case, unique) exactly; ``pure_python``
    takes the fallback even where Hyperscan is installed (the tests compare the two)."""
    unique = tuple(dict.fromkeys(strings))
    database = None if pure_python else _hyperscan_database(unique)
    if database is None:
        return PythonSearch(StringIndex.build(unique, case_sensitive=False))
    return HyperscanSearch(unique, database, max(map(len, unique)))


def _hyperscan_database(strings: Sequence[str]) -> hyperscan.Database | None:
    """One caseless database of ``strings``, each its own id; None where Hyperscan is not
    installed or cannot find them exactly."""
    if not strings or not all(_hyperscan_can(string) for string in strings):
        return None
    try:
        import hyperscan
    except ImportError:  # pragma: no cover - a platform without its wheel
        return None
    try:
        database = hyperscan.Database()
        database.compile(
            expressions=[_escaped(string) for string in strings],
            ids=list(range(len(strings))),
            elements=len(strings),
            flags=hyperscan.HS_FLAG_CASELESS,
        )
        hyperscan.Scratch(database)  # a CPU the library cannot run on says so here, not mid-scan
    except (hyperscan.error, OSError) as error:
        logger.warning(
            "Hyperscan cannot run here (%s): redaction takes its pure-Python search", error
        )
        return None
    return database


def _hyperscan_can(string: str) -> bool:
    return bool(string) and string.isascii() and "?" not in string


def _escaped(string: str) -> bytes:
    """``string`` as a Hyperscan pattern that matches it literally (every version takes it; the
    literal API came later)."""
    return "".join(c if c.isalnum() else f"\\x{ord(c):02x}" for c in string).encode()
