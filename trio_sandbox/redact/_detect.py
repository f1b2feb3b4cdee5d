"""Run a rule set over one piece of text: where are its secrets.

Follows gitleaks' detection for each rule: the rule runs only when one of its keywords occurs;
matches come in ``finditer`` order; the secret is the ``secretGroup`` (or the first non-empty
group, or the whole match trimmed of newlines); a secret whose Shannon entropy is at most the
rule's floor is dropped, and so is one that a global or rule allowlist allows. gitleaks'
``gitleaks:allow`` comment is not honoured: the sandbox writes the text, and it must not be able
to opt out of redaction.

An anchored rule (see ``_rules``) is tried only where one of its keywords starts, which gives
the same matches as a full ``finditer``; the others run ``finditer`` in windows of bounded work.
Scans are generators that yield between bounded steps, so an async caller can let other tasks
run; they return their findings.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Generator, Sequence
from typing import Final

import attrs

from ._keywords import StringIndex
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
class Detector:
    """The rules of a :class:`RuleSet` with the keyword index that triggers them."""

    rules: RuleSet
    keywords: StringIndex
    # Per keyword (index in ``keywords.strings``): the rules it triggers, in rule order.
    triggers: tuple[tuple[int, ...], ...]
    # Per rule: the keyword indexes that trigger it.
    rule_keywords: tuple[tuple[int, ...], ...]
    # No rule matches fewer characters.
    min_width: int

    @classmethod
    def build(cls, rules: RuleSet) -> Detector:
        keywords = StringIndex.build(sorted(rules.keywords), case_sensitive=False)
        position = {keyword: index for index, keyword in enumerate(keywords.strings)}
        rule_keywords = tuple(
            tuple(sorted({position[keyword] for keyword in rule.keywords})) for rule in rules.rules
        )
        triggers: list[list[int]] = [[] for _ in keywords.strings]
        for rule_index, indexes in enumerate(rule_keywords):
            for keyword_index in indexes:
                triggers[keyword_index].append(rule_index)
        return cls(
            rules=rules,
            keywords=keywords,
            triggers=tuple(tuple(t) for t in triggers),
            rule_keywords=rule_keywords,
            min_width=min((rule.min_width for rule in rules.rules), default=0),
        )

    def keyword_starts(self, lowered: str) -> Generator[None, None, list[list[int]]]:
        """Where each keyword starts in the lower-cased text (see ``StringIndex.occurrences``)."""
        return self.keywords.occurrences(lowered)

    def restrict(self, starts: Sequence[Sequence[int]], begin: int, end: int) -> list[list[int]]:
        """The keyword starts that lie wholly in ``[begin, end)``, made relative to ``begin``."""
        restricted: list[list[int]] = []
        for keyword, positions in zip(self.keywords.strings, starts, strict=True):
            if not positions:
                restricted.append([])
                continue
            low = bisect.bisect_left(positions, begin)
            high = bisect.bisect_right(positions, end - len(keyword))
            restricted.append([position - begin for position in positions[low:high]])
        return restricted

    def scan(self, text: str, starts: Sequence[Sequence[int]]) -> Scan:
        """The rule findings in ``text``, given where its keywords start."""
        findings: list[Finding] = []
        if len(text) < self.min_width or not any(starts):
            return findings
        triggered = sorted(
            {
                rule
                for keyword, positions in enumerate(starts)
                if positions
                for rule in self.triggers[keyword]
            }
        )
        for rule_index in triggered:
            rule = self.rules.rules[rule_index]
            if rule.anchored:
                candidates = sorted(
                    {
                        position
                        for keyword in self.rule_keywords[rule_index]
                        for position in starts[keyword]
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
