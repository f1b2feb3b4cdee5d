"""Run a rule set over one piece of text: where are its secrets.

Follows gitleaks' detection for each rule: the rule runs only when one of its keywords occurs;
matches come in ``finditer`` order; the secret is the ``secretGroup`` (or the first non-empty
group, or the whole match trimmed of newlines); a secret whose Shannon entropy is at most the
rule's floor is dropped, and so is one that a global or rule allowlist allows. gitleaks'
``gitleaks:allow`` comment is not honoured: the sandbox writes the text, and it must not be able
to opt out of redaction.

An anchored rule (see ``_rules``) is tried only where one of its starts occurs, which gives
the same matches as a full ``finditer``; the others run ``finditer`` in windows of bounded work.
Scans are generators that yield between bounded steps, so an async caller can let other tasks
run; they return their findings.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Generator, Mapping, Sequence
from typing import Final

import attrs

from ._prefilter import LiteralSearch, literal_search
from ._rules import Rule, RuleSet

# Ranks break ties between overlapping findings of equal length: known values, then specific
# rules, then generic ones (gitleaks also prefers a specific rule's finding over a generic one).
RANK_KNOWN: Final = 0
RANK_RULE: Final = 1
RANK_GENERIC: Final = 2

_WINDOW: Final = 32 * 1024
_ATTEMPTS_PER_STEP: Final = 256
# How far one match attempt of a rule with no longest match may look (a PEM key of 16 kbit is
# under 13 KiB). A longer match is still found, by a second, unbounded attempt.
_UNBOUNDED_REACH: Final = 16 * 1024

Scan = Generator[None, None, "list[Finding]"]


@attrs.frozen
class Finding:
    """A secret at ``text[start:end]``, found by ``rule`` (a rule id or a known value's label)."""

    start: int
    end: int
    rule: str
    rank: int = RANK_RULE


def _reach(rule: Rule) -> int:
    return _UNBOUNDED_REACH if rule.max_width is None else rule.max_width


def shannon_entropy(text: str) -> float:
    if not text:
        return 0.0
    length = len(text)
    return -sum(count / length * math.log2(count / length) for count in Counter(text).values())


@attrs.frozen
class Detector:
    """The rules of a :class:`RuleSet` with the search for the literals that trigger them."""

    rules: RuleSet
    # Every rule's keywords and starts, and the end line of a private key (see `scan`).
    literals: LiteralSearch
    # Per literal (index in ``literals.strings``): the rules it is a keyword of, in rule order.
    triggers: tuple[tuple[int, ...], ...]
    # Per rule: the literal indexes of its starts (anchored rules are tried where they occur).
    rule_starts: tuple[tuple[int, ...], ...]
    # The literal index of `_PEM_END_LITERAL`.
    pem_end: int
    # No rule matches fewer characters.
    min_width: int

    @classmethod
    def build(cls, rules: RuleSet, *, pure_python: bool = False) -> Detector:
        """(``pure_python``: see ``literal_search``.)"""
        strings = sorted(
            {_PEM_END_LITERAL, *rules.keywords, *(s for rule in rules.rules for s in rule.starts)}
        )
        literals = literal_search(strings, pure_python=pure_python)
        position = {literal: index for index, literal in enumerate(literals.strings)}
        triggers: list[list[int]] = [[] for _ in literals.strings]
        for rule_index, rule in enumerate(rules.rules):
            for keyword_index in sorted({position[keyword] for keyword in rule.keywords}):
                triggers[keyword_index].append(rule_index)
        return cls(
            rules=rules,
            literals=literals,
            triggers=tuple(tuple(t) for t in triggers),
            rule_starts=tuple(
                tuple(position[start] for start in rule.starts) for rule in rules.rules
            ),
            pem_end=position[_PEM_END_LITERAL],
            min_width=min((rule.min_width for rule in rules.rules), default=0),
        )

    def literal_starts(self, text: str) -> Generator[None, None, dict[int, list[int]]]:
        """Where each literal starts in ``text`` (see ``LiteralSearch.occurrences``)."""
        return self.literals.occurrences(text)

    def restrict(
        self, starts: Mapping[int, Sequence[int]], begin: int, end: int
    ) -> dict[int, list[int]]:
        """The literal starts that lie wholly in ``[begin, end)``, made relative to ``begin``."""
        restricted: dict[int, list[int]] = {}
        strings = self.literals.strings
        for literal, positions in starts.items():
            low = bisect.bisect_left(positions, begin)
            high = bisect.bisect_right(positions, end - len(strings[literal]))
            if high > low:
                restricted[literal] = [position - begin for position in positions[low:high]]
        return restricted

    def scan(self, text: str, starts: Mapping[int, Sequence[int]]) -> Scan:
        """The rule findings in ``text``, and the ends of private keys in it, given where the
        literals start."""
        findings: list[Finding] = []
        # The end line of a private key holds this (`_PEM_END`, whose E, N and D have no other
        # case than their ASCII ones): where it does not occur, no key ends.
        if self.pem_end in starts:
            findings.extend(private_key_tails(text))
        if len(text) < self.min_width:
            return findings
        triggered = sorted({rule for literal in starts for rule in self.triggers[literal]})
        for rule_index in triggered:
            rule = self.rules.rules[rule_index]
            if rule.anchored:
                candidates = sorted(
                    {
                        position
                        for literal in self.rule_starts[rule_index]
                        for position in starts.get(literal, ())
                    }
                )
                yield from self._scan_anchored(rule, text, candidates, findings)
            else:
                yield from self._scan_windows(rule, text, findings)
        return findings

    def _scan_anchored(
        self, rule: Rule, text: str, candidates: Sequence[int], findings: list[Finding]
    ) -> Generator[None, None, None]:
        match_at = rule.pattern.match
        reach = _reach(rule)
        size = len(text)
        last_end = 0
        for attempt, position in enumerate(candidates, 1):
            if attempt % _ATTEMPTS_PER_STEP == 0:
                yield
            if position < last_end:
                continue
            # Bounded, so that one attempt costs at most `reach` characters of backtracking.
            end = min(size, position + reach)
            match = match_at(text, position, end)
            if match is not None and match.end() == end < size:
                # It may have stopped at the bound ($ matches there): ask again without it.
                match = match_at(text, position)
            if match is None or match.end() == position:
                continue
            self._found(rule, text, match, last_end, findings)
            last_end = match.end()

    def _scan_windows(
        self, rule: Rule, text: str, findings: list[Finding]
    ) -> Generator[None, None, None]:
        """``finditer`` in windows of ``_WINDOW`` characters (plus the longest possible match),
        so that no single search runs over the whole of a large text."""
        search = rule.pattern.search
        reach = _reach(rule)
        size = len(text)
        position = 0
        last_end = 0
        found = 0
        while position <= size:
            end = min(size, position + _WINDOW + reach)
            # A match that starts by `sure` fits in the window; a later one may be cut short.
            sure = end if end == size else end - reach
            match = search(text, position, end)
            if match is not None and match.start() > sure:
                match = None
            if match is not None and match.end() == end < size:
                # It may have stopped at the window's edge ($ matches there): ask again.
                match = search(text, match.start())
            if match is None:
                if end == size:
                    return
                position = sure + 1
                yield
                continue
            self._found(rule, text, match, last_end, findings)
            last_end = match.end()
            position = last_end if last_end > match.start() else match.start() + 1
            found += 1
            if found % _ATTEMPTS_PER_STEP == 0:
                yield

    def _found(
        self, rule: Rule, text: str, match: re.Match[str], floor: int, findings: list[Finding]
    ) -> None:
        start = match.start()
        if rule.prefix_class is not None:
            # What the rule's lazy identifier prefix would have taken: the run of prefix
            # characters just before, at most prefix_max, not before the previous match.
            limit = max(floor, start - rule.prefix_max)
            prefix_char = rule.prefix_class.match
            while start > limit and prefix_char(text, start - 1):
                start -= 1
        finding = self._finding(rule, text, match, start)
        if finding is not None:
            findings.append(finding)

    def _finding(self, rule: Rule, text: str, match: re.Match[str], start: int) -> Finding | None:
        end = match.end()
        while start < end and text[start] == "\n":
            start += 1
        while end > start and text[end - 1] == "\n":
            end -= 1
        secret_start, secret_end = start, end
        if rule.secret_group:
            secret_start, secret_end = match.span(rule.secret_group)
        else:
            for group in range(1, (rule.pattern.groups or 0) + 1):
                group_start, group_end = match.span(group)
                if group_end > group_start:
                    secret_start, secret_end = group_start, group_end
                    break
        if secret_start < 0 or secret_end <= secret_start:
            return None
        secret = text[secret_start:secret_end]
        if rule.entropy is not None and shannon_entropy(secret) <= rule.entropy:
            return None
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        line = text[line_start : len(text) if line_end < 0 else line_end]
        matched = text[start:end]
        for allowlist in (*self.rules.allowlists, *rule.allowlists):
            if allowlist.allows(secret=secret, match=matched, line=line):
                return None
        rank = RANK_GENERIC if "generic" in rule.id else RANK_RULE
        return Finding(secret_start, secret_end, rule.id, rank)


# The end of a private key shown without its beginning (`tail -5 key.pem`): the key material
# on the lines just before an END ... PRIVATE KEY line. Found by walking back from each END
# line, one line at a time, while lines look like key material; a walk stops at a line holding
# "-----", so each line is walked at most once (linear). Lines of key material without their
# BEGIN or END line (`sed -n 5,10p key.pem`) are not recognised: they look like any base64.
_PEM_END: Final = re.compile(r"-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----", re.I)
_PEM_END_LITERAL: Final = "-----end"
# What may start a line before its content: blanks, and a line number (cat -n, grep -n, view).
_PREFIX: Final = r"[ \t]*(?:[0-9]{1,9}[:\t-][ \t]*)?"
_LINE_PREFIX: Final = re.compile(_PREFIX, re.A)
# A line of key material: base64, or a header of an encrypted key (Proc-Type, DEK-Info).
_KEY_LINE: Final = re.compile(
    _PREFIX + r"([A-Za-z0-9+/=]{1,128}|[A-Za-z-]{1,32}:[^\r\n]{0,200})[ \t]*\r?", re.A
)
# Key material before an END line is at least this long (one line of a key is 64 characters).
_MIN_KEY_TAIL: Final = 16


def private_key_tails(text: str) -> list[Finding]:
    """The key material just before each END ... PRIVATE KEY line of ``text``, with that line."""
    findings: list[Finding] = []
    for end in _PEM_END.finditer(text):
        line_start = text.rfind("\n", 0, end.start()) + 1
        if not _LINE_PREFIX.fullmatch(text, line_start, end.start()):
            continue  # the marker inside other text (source code naming it), not a key's end
        position, material = line_start, 0
        while position > 0:
            previous = text.rfind("\n", 0, position - 1) + 1
            line = _KEY_LINE.fullmatch(text, previous, position - 1)
            if line is None or "-----" in line.group(1):
                break
            material += len(line.group(1))
            position = previous
        if material >= _MIN_KEY_TAIL:
            findings.append(Finding(position, end.end(), "private-key"))
    return findings
