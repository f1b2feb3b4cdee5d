"""The live redactor: secrets in text become ``[REDACTED_SECRET:<rule>:<id>]`` and back.

One secret value keeps one placeholder for the redactor's life; the id is random (48 bits), so
nobody can work it out from the value. The map lives in this object's memory only.

``redact_text`` splits the text at placeholders (issued or not, they are never scanned, so
redacting redacted text changes nothing) and scans each piece in between on its own: known
values (exact, case-sensitive), then the rules. Overlapping findings merge into one span, named
after the longest (then known values before rules, then specific rules before generic ones);
touching findings stay separate placeholders. Cutting secrets out can make the text around them
look different to a rule (an end of text, a word boundary), so the pieces left between new
placeholders are scanned again, on their own, until none changes: the result is a fixed point,
which is why a second ``redact_text`` leaves it as it is.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import logging
import math
import re
import secrets
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Final, TypeAlias, TypeVar

import attrs
import trio

from ._detect import RANK_KNOWN, Detector, Finding
from ._errors import MIN_KNOWN_SECRET_LENGTH as MIN_KNOWN_SECRET_LENGTH
from ._errors import KnownSecretTooShort, RedactionError, RedactionTimeout
from ._known import KnownIndex
from ._rules import RuleSet, default_rules

logger = logging.getLogger("trio_sandbox.redact")

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
# What the JSON helpers accept: any sequence (not str) or mapping of such values.
JsonLike: TypeAlias = (
    "bool | int | float | str | Sequence[JsonLike] | Mapping[str, JsonLike] | None"
)

PLACEHOLDER: Final = re.compile(r"\[REDACTED_SECRET:([A-Za-z0-9_.:-]{1,64}):([0-9a-f]{12})\]")
_PLACEHOLDER_OPEN: Final = "[REDACTED_SECRET:"
# Characters each string of a JSON value counts at least, for the scanning budget: at the default
# 2 s per MiB, 2 ms, some 100 times what scanning a short string costs.
_MIN_STRING_SIZE: Final = 1024
# JSON nested deeper than this is not walked (withheld): no MCP message needs it, and a walk
# that deep is a way to make the check fail rather than a message.
MAX_JSON_DEPTH: Final = 64
_RULE_NAME: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# Rounds of re-scanning the pieces between new placeholders; one or two suffice in practice.
_MAX_ROUNDS: Final = 8
# An async scan lets other tasks run at least this often (seconds of work between checkpoints).
# Every task runnable runs once between two checkpoints, and a small call passes through a few
# tasks: each hop waits out one step of a large scan. At 0.1 ms a no-op call beside clients
# fetching 1 MiB took 3.9 ms (median), at 2 ms 6.6 ms; a scan's own time did not change.
_STEP_BUDGET: Final = 0.0001

_Steps: TypeAlias = Generator[None, None, str]
# A text cut at its placeholders: each plain piece with its secrets' spans (none for a placeholder)
_Scanned: TypeAlias = "list[tuple[str, list[_Span]]]"
_TextSteps: TypeAlias = Callable[[str], _Steps]
_T = TypeVar("_T")


@attrs.define(eq=False)
class _Budget:
    """Scanning time left for one text or JSON value, counting only the scan's own steps."""

    size: int
    limit: float
    spent: float = 0.0

    def spend(self, seconds: float) -> None:
        self.spent += seconds
        if self.spent > self.limit:
            raise RedactionTimeout(
                f"redacting {self.size} characters took more than {self.limit:.1f} s of"
                " scanning; the text was not redacted"
            )


@attrs.frozen
class _Span:
    start: int
    end: int
    rule: str


# Occurrences of found values looked at between two yields of a scan.
_HITS_PER_STEP: Final = 4096
# The clean-text memo: texts of at most this many characters, at most this many of them.
_CLEAN_TEXT_MAX = 256
_CLEAN_TEXTS = 4096


@attrs.define(eq=False)
class SecretRedactor:
    """Replaces secrets with placeholders and puts them back. Not thread-safe: use it from one
    thread (a Trio program's); its async methods may interleave freely."""

    rules: RuleSet = attrs.field(factory=default_rules)
    # Scanning time allowed for one text: this many seconds per MiB, and for at least 1 MiB.
    # Ordinary output scans at about 300 MB/s (45 MB/s on the pure-Python fallback), so the
    # default leaves a margin of 50x at the least.
    seconds_per_mib: float = 2.0
    # Told the rule of each value given a placeholder for the first time (the proxy's metrics).
    on_new_placeholder: Callable[[str], None] | None = None
    _detector: Detector = attrs.field(init=False)
    _placeholders: dict[str, str] = attrs.field(init=False, factory=dict)  # value -> placeholder
    _values: dict[str, str] = attrs.field(init=False, factory=dict)  # placeholder -> value
    # The known values and their rule names; adding one costs its own length.
    _known: KnownIndex = attrs.field(init=False, factory=KnownIndex)
    # placeholder -> the sources whose text held its value (see redact_text's `source`)
    _owners: dict[str, set[str | None]] = attrs.field(init=False, factory=dict)
    # Short texts found clean (with the rules, or without), oldest first: every message repeats
    # its keys and small values ("content", "type", "text"), and a scan has a fixed cost. The
    # rules never change; the known values do, and then the texts holding the new one leave.
    _clean: dict[tuple[str, bool], None] = attrs.field(init=False, factory=dict)
    # Known values added so far: a scan that saw one come in meanwhile memoizes nothing.
    _additions: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self._detector = _detector_for(self.rules)

    # -- known values --------------------------------------------------------------------

    def add_known_secret(
        self, value: str, rule: str = "known", *, source: str | None = None
    ) -> str:
        """Redact ``value`` wherever it appears from now on, even where no rule would match.

        ``rule`` names it in the placeholder (``password``, ``env:GITHUB_TOKEN``); a value that
        already has a placeholder keeps it. ``source`` is who may have it restored (as if its
        text had held the value). Returns the value's placeholder. Raises
        :class:`KnownSecretTooShort` when the value is shorter than
        :data:`MIN_KNOWN_SECRET_LENGTH` (redacting every "a" of a text would hide the text, not
        the secret); the message names the rule, never the value.
        """
        self.check_known_secret(value, rule)
        placeholder = self._placeholder(value, rule)
        self._owners[placeholder].add(source)
        return placeholder

    @staticmethod
    def check_known_secret(value: str, rule: str = "known") -> None:
        """Raise what :meth:`add_known_secret` would raise for ``value`` and ``rule``."""
        if not isinstance(value, str):
            raise TypeError(f"a known secret is a str, not {type(value).__name__}")
        if not isinstance(rule, str) or not _RULE_NAME.fullmatch(rule):
            raise ValueError(
                f"rule name {rule!r} must be 1-64 characters of letters, digits and _ . : -"
            )
        if len(value) < MIN_KNOWN_SECRET_LENGTH:
            raise KnownSecretTooShort(
                f"known secret {rule} has {len(value)} characters, fewer than"
                f" {MIN_KNOWN_SECRET_LENGTH}: it cannot be redacted without hiding ordinary text"
            )

    # -- text ----------------------------------------------------------------------------

    def redact_text(self, text: str, *, source: str | None = None, rules: bool = True) -> str:
        """``text`` with every secret found replaced by its placeholder (blocks the thread: for
        large text in a Trio program use :meth:`redact_text_async`). Raises
        :class:`RedactionTimeout` when scanning takes longer than :attr:`seconds_per_mib`
        allows.

        ``source`` names who wrote the text: each value found in it may be restored towards that
        source from then on (:meth:`restore_text`), and towards no other that did not show it
        too. Placeholders already in the text (issued or forged) give their source nothing.
        ``rules=False`` redacts known values and values found before only (the rules do not run).
        """
        return _run(self._text_steps(_checked_str(text), source, rules))

    async def redact_text_async(
        self, text: str, *, source: str | None = None, rules: bool = True
    ) -> str:
        """:meth:`redact_text` in steps of about 0.1 ms, letting other tasks run between
        them. Cancelling it leaves the redactor as it was."""
        return await _run_async(self._text_steps(_checked_str(text), source, rules))

    def restore_text(self, text: str, *, source: str | None = None) -> str:
        """``text`` with each placeholder whose value ``source`` showed (in a text redacted with
        that source, or a known secret added for it) replaced by its value, in one pass: a
        restored value that looks like a placeholder stays as it is. Every other placeholder
        passes unchanged."""
        values = self._values
        owners = self._owners

        def value(match: re.Match[str]) -> str:
            placeholder = match.group(0)
            if source in owners.get(placeholder, ()):
                return values[placeholder]
            return placeholder

        return PLACEHOLDER.sub(value, _checked_str(text))

    # -- JSON ----------------------------------------------------------------------------

    def redact_json(
        self, value: JsonLike, *, source: str | None = None, rules: bool = True
    ) -> JsonValue:
        """A copy of a JSON value (dicts, lists, str, numbers, bools, None; tuples and other
        mappings are taken as lists and dicts) with every string in it, keys included, redacted
        on its own. A secret found in one string gets the same placeholder in every other. The
        scanning time allowed is for all its strings together; a value nested deeper than
        :data:`MAX_JSON_DEPTH` raises :class:`RedactionError`."""
        return _run(self._json_redact_steps(value, source, rules))

    def redact_small_json(self, value: JsonLike, limit: int) -> JsonValue | None:
        """:meth:`redact_json` of ``value`` at once (no checkpoint) when its strings are within
        ``limit`` characters and it takes no longer than one step of :meth:`redact_json_async`,
        else None (the caller takes :meth:`redact_json_async`): a record's small arguments
        should not cost a trip through the scheduler, nor hold the loop up when they are made
        to be slow to scan."""
        if not value and type(value) is dict:
            return {}  # nothing to scan: a tool called without arguments
        if _string_size(value) > limit:
            return None
        finished = _advance(
            self._json_redact_steps(value, None, True), time.perf_counter() + _STEP_BUDGET
        )
        return finished[0] if finished else None

    async def redact_json_async(
        self, value: JsonLike, *, source: str | None = None, rules: bool = True
    ) -> JsonValue:
        """:meth:`redact_json` in steps, like :meth:`redact_text_async`."""
        return await _run_async(self._json_redact_steps(value, source, rules))

    def restore_json(self, value: JsonLike, *, source: str | None = None) -> JsonValue:
        """A copy of a JSON value (e.g. tool-call arguments) with every string restored towards
        ``source`` (see :meth:`restore_text`)."""

        def restore(text: str) -> _Steps:
            yield from ()  # a generator, like the redacting steps, for the shared JSON walk
            return self.restore_text(text, source=source)

        return _run(self._json_steps(value, restore, "$", 0))

    # -- internals -----------------------------------------------------------------------

    def _placeholder(self, value: str, rule: str) -> str:
        placeholder = self._placeholders.get(value)
        if placeholder is None:
            placeholder = f"[REDACTED_SECRET:{rule}:{secrets.token_hex(6)}]"
            while placeholder in self._values:  # pragma: no cover - a 48-bit collision
                placeholder = f"[REDACTED_SECRET:{rule}:{secrets.token_hex(6)}]"
            self._placeholders[value] = placeholder
            self._values[placeholder] = value
            self._owners[placeholder] = set()
            if self.on_new_placeholder is not None:
                self.on_new_placeholder(rule)
            # A value found once is found again wherever it appears, whatever surrounds it: an
            # upstream given the value back (restored) cannot echo it bare, past the rule that
            # needed its context. Shorter ones would redact ordinary text.
            if len(value) >= MIN_KNOWN_SECRET_LENGTH and self._known.add(value, rule):
                self._additions += 1
                self._forget_clean(value)
        return placeholder

    def _forget_clean(self, value: str) -> None:
        """Drop the texts found clean that hold ``value``, now known (a bounded cost: the memo
        has at most :data:`_CLEAN_TEXTS` texts of at most :data:`_CLEAN_TEXT_MAX` characters)."""
        if len(value) <= _CLEAN_TEXT_MAX:
            for key in [key for key in self._clean if value in key[0]]:
                del self._clean[key]

    def _budget(self, size: int) -> _Budget:
        return _Budget(size, self.seconds_per_mib * max(1.0, size / 2**20))

    def _text_steps(self, text: str, source: str | None, rules: bool) -> _Steps:
        spans = yield from self._scan_steps(text, self._budget(len(text)), rules)
        return self._apply(spans, source)

    def _json_redact_steps(
        self, value: JsonLike, source: str | None, rules: bool
    ) -> Generator[None, None, JsonValue]:
        budget = self._budget(_string_size(value))
        scanned: list[_Scanned] = []

        def scan(text: str) -> _Steps:
            scanned.append((yield from self._scan_steps(text, budget, rules)))
            return ""

        # First every string is scanned, then the copy is made: the map changes only once the
        # whole value is scanned, so a cancelled or timed-out scan leaves no trace.
        yield from self._json_steps(value, scan, "$", 0)
        # A value found in one string is a secret in every other string of the value too (a
        # token shown whole in one string, and where no rule sees it in another).
        searched: set[str] = set()
        for _ in range(_MAX_ROUNDS if len(scanned) > 1 else 0):
            values = (
                (plain[span.start : span.end], span.rule)
                for pieces in scanned
                for plain, spans in pieces
                for span in spans
            )
            found = yield from _new_values(values, searched, self._known)
            if not len(found):
                break
            again: list[_Scanned] = []
            for pieces in scanned:
                text = "".join(plain for plain, _ in pieces)
                again.append((yield from self._scan_steps(text, budget, rules, found)))
            scanned = again
        results = iter([self._apply(one, source) for one in scanned])

        def apply(text: str) -> _Steps:
            yield from ()
            return next(results)

        return (yield from self._json_steps(value, apply, "$", 0))

    def _json_steps(
        self, value: JsonLike, text_steps: _TextSteps, path: str, depth: int
    ) -> Generator[None, None, JsonValue]:
        if isinstance(value, str):
            return (yield from text_steps(value))
        if value is None or isinstance(value, bool | int | float):
            return value
        if depth >= MAX_JSON_DEPTH:
            raise RedactionError(
                f"JSON nested deeper than {MAX_JSON_DEPTH} levels at {path[:200]}: not checked"
            )
        if isinstance(value, list | tuple):
            items: list[JsonValue] = []
            for index, item in enumerate(value):
                items.append(
                    (yield from self._json_steps(item, text_steps, f"{path}[{index}]", depth + 1))
                )
            return items
        if isinstance(value, Mapping):
            copy: dict[str, JsonValue] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TypeError(f"JSON object key at {path} is a {type(key).__name__}, not str")
                new_key = yield from text_steps(key)
                copy[new_key] = yield from self._json_steps(
                    item, text_steps, f"{path}.{key}", depth + 1
                )
            return copy
        raise TypeError(f"not a JSON value at {path}: {type(value).__name__}")

    def _scan_steps(
        self, text: str, budget: _Budget, rules: bool, extra: KnownIndex | None = None
    ) -> Generator[None, None, _Scanned]:
        """The pieces of ``text`` between placeholders, each with its secrets' spans;
        ``extra``: values to find as if they were known (the clean-text memo does not apply)."""
        known_index = self._known if len(self._known) else None
        additions = self._additions
        shortest = self._detector.min_width if rules else math.inf
        if known_index is not None:
            shortest = min(shortest, MIN_KNOWN_SECRET_LENGTH)
        pieces: _Scanned = []  # plain text and its secrets, placeholders
        position = 0
        # (A plain search first: three times faster than the regex over text without any.)
        found = PLACEHOLDER.finditer(text) if _PLACEHOLDER_OPEN in text else ()
        for placeholder in [*found, None]:
            end = len(text) if placeholder is None else placeholder.start()
            plain = text[position:end]
            spans: list[_Span] = []
            if len(plain) >= shortest and (
                extra is not None or not self._known_clean(plain, rules)
            ):
                spans = yield from _metered(
                    self._scan_plain(plain, known_index, rules, extra), budget
                )
                if (
                    not spans
                    and extra is None
                    and len(plain) <= _CLEAN_TEXT_MAX
                    and additions == self._additions
                ):
                    self._clean[plain, rules] = None
                    if len(self._clean) > _CLEAN_TEXTS:
                        del self._clean[next(iter(self._clean))]
            pieces.append((plain, spans))
            if placeholder is not None:
                pieces.append((placeholder.group(0), []))
                position = placeholder.end()
        return pieces

    def _apply(self, pieces: _Scanned, source: str | None) -> str:
        """The text of scanned ``pieces`` with placeholders for their secrets (no yield: the map
        changes at once, after the scan)."""
        out: list[str] = []
        count = 0
        made: dict[str, str] = {}  # a value found many times is looked up once
        for plain, spans in pieces:
            position = 0
            for span in spans:
                out.append(plain[position : span.start])
                value = plain[span.start : span.end]
                placeholder = made.get(value)
                if placeholder is None:
                    placeholder = made[value] = self._placeholder(value, span.rule)
                    self._owners[placeholder].add(source)
                out.append(placeholder)
                position = span.end
            out.append(plain[position:])
            count += len(spans)
        if count:
            logger.debug("redacted %d secrets", count)
        return "".join(out)

    def _scan_plain(
        self,
        text: str,
        known_index: KnownIndex | None,
        rules: bool = True,
        extra: KnownIndex | None = None,
    ) -> Generator[None, None, list[_Span]]:
        """Secret spans of a placeholder-free text, sorted and disjoint, to a fixed point; a
        value found anywhere in ``text`` is redacted everywhere in it (as a value found earlier
        would be: redacting again gives the same)."""
        literal_starts: dict[int, list[int]] = {}
        if rules:
            literal_starts = yield from self._detector.literal_starts(text)
        known: list[tuple[KnownIndex, list[tuple[int, str]]]] = []
        for index in (known_index, extra):
            if index is not None:
                known.append((index, (yield from index.occurrences(text))))
        scan = functools.partial(self._settle, text, literal_starts, known, rules)
        result = yield from scan([(0, len(text))])
        searched: set[str] = set()
        for _ in range(_MAX_ROUNDS):
            elsewhere = yield from _other_occurrences(text, result, known_index, searched)
            if not elsewhere:
                break
            spans = (Finding(span.start, span.end, span.rule) for span in result)
            result = yield from _merged(heapq.merge(spans, elsewhere, key=_start))
            more = yield from scan(_gaps(result, 0, len(text)))
            if more:
                result = sorted([*result, *more], key=lambda span: span.start)
        return result

    def _settle(
        self,
        text: str,
        literal_starts: dict[int, list[int]],
        known: list[tuple[KnownIndex, list[tuple[int, str]]]],
        rules: bool,
        pending: list[tuple[int, int]],
    ) -> Generator[None, None, list[_Span]]:
        """The spans in ``text``'s ``pending`` pieces, scanning again what is left between new
        placeholders until nothing changes."""
        detector = self._detector
        result: list[_Span] = []
        for _ in range(_MAX_ROUNDS):
            next_pending: list[tuple[int, int]] = []
            for begin, end in pending:
                piece = text[begin:end]
                findings: list[Finding] = []
                if rules:
                    findings = yield from detector.scan(
                        piece, detector.restrict(literal_starts, begin, end)
                    )
                for index, occurrences in known:
                    findings.extend(_known_findings(index, occurrences, begin, end))
                findings.sort(key=lambda f: (f.start, f.end))
                spans = yield from _merged(findings)
                result.extend(_Span(s.start + begin, s.end + begin, s.rule) for s in spans)
                # Re-scan what is left between the new placeholders (and at the piece's ends).
                if spans:
                    next_pending.extend(
                        (begin + a, begin + b) for a, b in _gaps(spans, 0, len(piece))
                    )
            pending = next_pending
            if not pending:
                break
        else:
            logger.warning(
                "redaction did not settle in %d rounds; redacting again may redact more",
                _MAX_ROUNDS,
            )
        return result

    def _known_clean(self, text: str, rules: bool) -> bool:
        # Clean with the rules is clean without them too.
        return (text, True) in self._clean or (not rules and (text, False) in self._clean)


def _known_findings(
    index: KnownIndex, known: Sequence[tuple[int, str]], begin: int, end: int
) -> Iterable[Finding]:
    """The occurrences in ``known`` (sorted ``(start, value)``) inside ``text[begin:end]``, as
    findings relative to ``begin``."""
    for position in range(bisect.bisect_left(known, (begin, "")), len(known)):
        start, value = known[position]
        if start >= end:
            break
        if start + len(value) <= end:
            yield Finding(start - begin, start - begin + len(value), index.rule(value), RANK_KNOWN)


def _gaps(spans: Sequence[_Span], begin: int, end: int) -> list[tuple[int, int]]:
    """The non-empty stretches of ``[begin, end)`` around the sorted, disjoint ``spans``."""
    edges = [begin, *(x for s in spans for x in (s.start, s.end)), end]
    return [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True) if b > a]


def _new_values(
    found: Iterable[tuple[str, str]], searched: set[str], known: KnownIndex | None
) -> Generator[None, None, KnownIndex]:
    """An index of the found ``(value, rule)`` pairs whose value is long enough to become
    known, not known yet and not ``searched`` yet (each is added to ``searched``)."""
    index = KnownIndex()
    for count, (value, rule) in enumerate(found, 1):
        if not count % _HITS_PER_STEP:
            yield
        if len(value) < MIN_KNOWN_SECRET_LENGTH or value in searched:
            continue
        searched.add(value)
        if known is None or value not in known:
            index.add(value, rule)
    return index


def _other_occurrences(
    text: str, spans: Sequence[_Span], known_index: KnownIndex | None, searched: set[str]
) -> Generator[None, None, list[Finding]]:
    """Where the values of ``spans`` not ``searched`` yet also occur in ``text`` outside those
    spans (a rule may find a value in one place and not in another: at the text's start, or
    cut by a known value that is a prefix of it), named by the span that found them. Values
    too short to become known, or known already (found everywhere by their index), are not
    looked for; an occurrence inside the one before of the same value does not count. One
    stepped pass of an index of the values, however many there are."""
    found_values = ((text[span.start : span.end], span.rule) for span in spans)
    values = yield from _new_values(found_values, searched, known_index)
    if not len(values):
        return []
    taken = {(span.start, span.end) for span in spans}
    found: list[Finding] = []
    hits = yield from values.occurrences(text, overlapping=False)
    for count, (start, value) in enumerate(hits, 1):
        if not count % _HITS_PER_STEP:
            yield
        if (start, start + len(value)) not in taken:
            found.append(Finding(start, start + len(value), values.rule(value)))
    return found


def _merged(findings: Iterable[Finding]) -> Generator[None, None, list[_Span]]:
    """Findings, in order of their starts, as spans: overlapping ones become one span named
    after the best of them (longest, then by rank, then earliest, then by rule name); touching
    ones stay apart. Yields every so often (a value repeated all over a text is found tens of
    thousands of times)."""
    spans: list[_Span] = []
    cluster: list[Finding] = []
    cluster_end = -1
    for count, finding in enumerate(findings, 1):
        if not count % _HITS_PER_STEP:
            yield
        if finding.start < cluster_end:
            cluster.append(finding)
            cluster_end = max(cluster_end, finding.end)
            continue
        if cluster:
            spans.append(_best_of(cluster, cluster_end))
        cluster = [finding]
        cluster_end = finding.end
    if cluster:
        spans.append(_best_of(cluster, cluster_end))
    return spans


def _best_of(cluster: list[Finding], end: int) -> _Span:
    best = min(cluster, key=lambda f: (f.start - f.end, f.rank, f.start, f.rule))
    return _Span(cluster[0].start, end, best.rule)


def _start(finding: Finding) -> int:
    return finding.start


_detectors: weakref.WeakKeyDictionary[RuleSet, Detector] = weakref.WeakKeyDictionary()


def _detector_for(rules: RuleSet) -> Detector:
    """One detector (literal search) per rule set, shared by the redactors that use it."""
    detector = _detectors.get(rules)
    if detector is None:
        detector = _detectors[rules] = Detector.build(rules)
    return detector


def _string_size(value: JsonLike) -> int:
    """The size a JSON value's scanning budget is for: its strings' characters, keys included,
    each string counting at least :data:`_MIN_STRING_SIZE` (a scan has a fixed cost per string,
    about 80 us, which thousands of small strings add up to)."""
    size = 0
    stack: list[JsonLike] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            size += max(len(item), _MIN_STRING_SIZE)
        elif isinstance(item, Mapping):
            size += sum(max(len(key), _MIN_STRING_SIZE) for key in item if isinstance(key, str))
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return size


def _checked_str(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text to redact or restore is a str, not {type(text).__name__}")
    return text


def _metered(steps: Generator[None, None, _T], budget: _Budget) -> Generator[None, None, _T]:
    """`steps`, each timed against `budget` (time between steps, when other tasks may run, is
    not counted)."""
    while True:
        started = time.perf_counter()
        try:
            next(steps)
        except StopIteration as done:
            budget.spend(time.perf_counter() - started)
            result: _T = done.value
            return result
        budget.spend(time.perf_counter() - started)
        yield


def _advance(steps: Generator[None, None, _T], until: float) -> list[_T]:
    """Run `steps` until they finish (``[result]``) or the clock passes `until` (``[]``)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: _T = done.value
            return [result]
        if time.perf_counter() >= until:
            return []


def _run(steps: Generator[None, None, _T]) -> _T:
    return _advance(steps, math.inf)[0]


async def _run_async(steps: Generator[None, None, _T]) -> _T:
    # A full checkpoint even for a text done within one step: a walk that awaits many small
    # scans (a result of 20,000 small blobs) must still give the loop a turn between them.
    await trio.lowlevel.checkpoint()
    while not (finished := _advance(steps, time.perf_counter() + _STEP_BUDGET)):
        await trio.lowlevel.checkpoint()
    return finished[0]
