"""The gitleaks rule set, loaded from its TOML form into compiled Python rules.

A gitleaks rule is a regex with ``keywords`` (the rule only runs on text that contains one of
them, case-insensitively), an optional Shannon ``entropy`` floor for the secret, an optional
``secretGroup`` and allowlists (regexes on the secret, the match or the line; stopwords; paths and
commits, which tool output does not have). The default set is the one gitleaks ships, vendored
beside this module as ``gitleaks.toml`` (MIT, credited in that file), plus one allowlist of our
own for a false positive that tool output has and source code rarely does (``_OUR_ALLOWLISTS``).

Loading also prepares each rule for a fast scan (see ``_detect``):

- A leading lazy identifier prefix such as ``[\\w.-]{0,50}?`` (about half of the rules start so)
  is split off: the rest of the pattern is matched, and the match is then extended to the left
  over that class, which is what the lazy prefix does, without trying it at every offset.
- When every match of the (rest of the) pattern must begin with one of a few literal strings
  (its ``starts``: often its keywords, or a name such as ``lob`` before a keyword ``test_``),
  the rule is *anchored*: it is only tried where one of them occurs, instead of over the whole
  text. This is decided from the parsed pattern; when that cannot be shown, the rule is
  scanned in full, as gitleaks does. Either way it runs only when one of its keywords occurs.

Rules that cannot run on tool output are skipped with a reason: rules scoped to file paths,
composite rules, and patterns that cannot be translated from RE2 (one log line counts them).
"""

from __future__ import annotations

import functools
import importlib
import importlib.resources
import json
import logging
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import attrs

from ._errors import RuleSetError, UntranslatableRegex
from ._re2 import FLAGS, compile_translated, translate_re2

logger = logging.getLogger("trio_sandbox.redact")

AllowlistTarget = Literal["secret", "match", "line"]

# ``[\w.-]{0,50}?`` and the like at the start of a pattern, possibly inside a flag group.
_LAZY_PREFIX: Final = re.compile(r"(\[(?:\\.|[^\]\\])+\]|\\[wdsWDS])\{0,(\d+)\}\?")
_BARE_FLAGS: Final = re.compile(r"\(\?[ims]+\)")
_FLAG_GROUP_OPEN: Final = re.compile(r"\(\?[ims]*(?:-[ims]+)?:")
_MAX_PREFIXES: Final = 64
_TARGETS: Final[dict[str, AllowlistTarget]] = {"secret": "secret", "match": "match", "line": "line"}


@attrs.frozen
class Allowlist:
    """Findings this list allows (drops). ``require_all`` is gitleaks' ``condition = "AND"``.
    ``sources`` are Python regexes (translated from RE2), compiled on first use."""

    target: AllowlistTarget
    sources: tuple[str, ...]
    stopwords: tuple[str, ...]
    require_all: bool = False

    @functools.cached_property
    def regexes(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(source, FLAGS) for source in self.sources)

    def allows(self, *, secret: str, match: str, line: str) -> bool:
        subject = {"secret": secret, "match": match, "line": line}[self.target]
        checks: list[bool] = []
        if self.regexes:
            checks.append(any(regex.search(subject) for regex in self.regexes))
        if self.stopwords:
            lowered = secret.lower()
            checks.append(any(word in lowered for word in self.stopwords))
        if not checks:
            return False
        return all(checks) if self.require_all else any(checks)


@attrs.frozen
class Rule:
    """One rule. ``regex`` is the rule's regex in Python syntax without its lazy identifier
    prefix (``prefix`` repeated at most ``prefix_max`` times, extended over after a match);
    both compile on first use (:attr:`pattern`, :attr:`prefix_class`): a scan meets few rules.
    """

    id: str
    regex: str
    keywords: tuple[str, ...]
    entropy: float | None = None
    secret_group: int = 0
    allowlists: tuple[Allowlist, ...] = ()
    # A character class in Python syntax; "": no prefix.
    prefix: str = ""
    prefix_max: int = 0
    # Every match starts with one of these (lower-case, ASCII; the case of letters ignored);
    # none: that is not known, and the rule is searched for in the whole text.
    starts: tuple[str, ...] = ()
    # Shortest and longest possible match of `pattern` (None: unbounded).
    min_width: int = 0
    max_width: int | None = None

    @property
    def anchored(self) -> bool:
        """Whether the rule is tried only where one of its :attr:`starts` occurs."""
        return bool(self.starts)

    @functools.cached_property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(self.regex, FLAGS)

    @functools.cached_property
    def prefix_class(self) -> re.Pattern[str] | None:
        return re.compile(self.prefix, FLAGS) if self.prefix else None


@attrs.frozen
class SkippedRule:
    id: str
    reason: str


@attrs.frozen(eq=False)
class RuleSet:
    """Compiled rules and global allowlists. Compared by identity (it is compiled state)."""

    rules: tuple[Rule, ...]
    allowlists: tuple[Allowlist, ...] = ()
    skipped: tuple[SkippedRule, ...] = ()

    @property
    def keywords(self) -> frozenset[str]:
        return frozenset(keyword for rule in self.rules for keyword in rule.keywords)


def load_rules(
    source: str | bytes, *, extra_allowlists: Mapping[str, Sequence[Allowlist]] | None = None
) -> RuleSet:
    """Load a gitleaks configuration (TOML text) into a :class:`RuleSet`; `extra_allowlists`
    adds allowlists to rules by id."""
    try:
        document = tomllib.loads(source.decode() if isinstance(source, bytes) else source)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RuleSetError(f"rule set is not valid TOML: {exc}") from None
    global_allowlists: list[Allowlist] = []
    targeted: dict[str, list[Allowlist]] = {
        rule_id: list(lists) for rule_id, lists in (extra_allowlists or {}).items()
    }
    for table in _allowlist_tables(document, "allowlist", "allowlists", where="top level"):
        target_rules = _get(table, "targetRules", list, where="allowlists", default=[])
        allowlist = _allowlist(table, where="global allowlist")
        if allowlist is None:
            continue
        if not target_rules:
            global_allowlists.append(allowlist)
        for rule_id in target_rules:
            targeted.setdefault(str(rule_id), []).append(allowlist)
    rules: list[Rule] = []
    skipped: list[SkippedRule] = []
    for index, table in enumerate(_get(document, "rules", list, where="top level", default=[])):
        if not isinstance(table, dict):
            raise RuleSetError(f"rules[{index}] is not a table")
        rule_id = _get(table, "id", str, where=f"rules[{index}]")
        try:
            rule = _rule(table, rule_id, extra_allowlists=targeted.get(rule_id, ()))
        except _Skip as skip:
            skipped.append(SkippedRule(rule_id, str(skip)))
            continue
        rules.append(rule)
    rule_set = RuleSet(tuple(rules), tuple(global_allowlists), tuple(skipped))
    _log_loaded(rule_set)
    return rule_set


def _log_loaded(rules: RuleSet) -> None:
    untranslatable = [s for s in rules.skipped if s.reason.startswith("untranslatable")]
    for skipped_rule in untranslatable:
        logger.warning("redaction rule %s skipped: %s", skipped_rule.id, skipped_rule.reason)
    logger.info(
        "loaded %d gitleaks rules (%d anchored at their starts); skipped %d: %d untranslatable, "
        "%d other",
        len(rules.rules),
        sum(rule.anchored for rule in rules.rules),
        len(rules.skipped),
        len(untranslatable),
        len(rules.skipped) - len(untranslatable),
    )


# Ours, beside gitleaks' own: tool output is not source code, and one shape in it fooled the
# generic rule. A keyword inside a base64 blob ("...qkeyicYe==") followed by a line break reads
# as an assignment whose value is whatever starts the next line (a sha256, say). So does an
# empty assignment ("TOKEN=") before the next line. A value that starts on the next line after
# "=" is not taken for a secret; "key:" then an indented value (YAML) still is.
_OUR_ALLOWLISTS: Final = {
    "generic-api-key": (
        Allowlist(target="match", sources=(r"\A[\w.\- \t]*=+[ \t]*\r?\n",), stopwords=()),
    ),
}


# Ours too: gitleaks' private-key rule needs the END line, but the first lines of a key are a
# secret on their own (`head -3 key.pem`, a file viewer's line range). From the BEGIN line on,
# every line of key material (base64, the Proc-Type / DEK-Info headers of an encrypted key,
# blank lines; each may start with a line number, as `cat -n`, `grep -n` and the view tool
# print them) is taken, to the END line, the end of the text, or the first other line. A body
# without its BEGIN line (`sed -n 5,10p key.pem`) is not recognised: its lines look like any
# base64 in a build log, and finding them backwards from an END line costs a pass per line.
# A line break, and the line number `cat -n`, `grep -n` or the view tool may start a line with.
_PEM_LINE: Final = r"[ \t]*\r?\n[ \t]*(?:[0-9]{1,9}[:\t-][ \t]*)?"
_PEM_HEADER: Final = r"[A-Za-z-]{1,32}:[^\r\n]{0,200}"
_PEM_MARK: Final = r"[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----"
_PRIVATE_KEY_START: Final = (
    rf"(?i)-----BEGIN{_PEM_MARK}(?:{_PEM_LINE}{_PEM_HEADER})*(?:{_PEM_LINE})?"
    rf"{_PEM_LINE}[A-Za-z0-9+/=]{{16,128}}"
    rf"(?:{_PEM_LINE}(?:{_PEM_HEADER}|[A-Za-z0-9+/=]{{1,128}})?)*"
    rf"(?:(?:{_PEM_LINE})?-----END{_PEM_MARK})?"
)
_OUR_RULES: Final = f"""
[[rules]]
id = "private-key"
description = "The beginning of a private key, with as much of its body as follows."
regex = '''{_PRIVATE_KEY_START}'''
keywords = ["-----begin"]
"""


# The vendored set (with our allowlist and rule above), translated and analysed: what
# `default_rules` loads. Made by `python -m trio_sandbox.redact._rules` from gitleaks.toml; a
# test makes it again and compares.
PRECOMPUTED: Final = "gitleaks_rules.json"


@functools.cache
def default_rules() -> RuleSet:
    """The vendored gitleaks rule set (with our allowlist and rule above), loaded once per
    process from its translated and analysed form (the regexes compile on first use)."""
    data = importlib.resources.files(__package__).joinpath(PRECOMPUTED).read_text()
    rules = rules_from_json(data)
    _log_loaded(rules)
    return rules


def default_rules_json() -> str:
    """The vendored rule set, translated from gitleaks.toml and analysed, as the JSON text
    :data:`PRECOMPUTED` holds."""
    data = importlib.resources.files(__package__).joinpath("gitleaks.toml").read_text()
    rules = load_rules(data + _OUR_RULES, extra_allowlists=_OUR_ALLOWLISTS)
    return json.dumps(attrs.asdict(rules), indent=0, sort_keys=True) + "\n"


def rules_from_json(text: str) -> RuleSet:
    """The :class:`RuleSet` whose ``attrs.asdict`` form is ``text`` (as
    :func:`default_rules_json` makes it)."""
    data = json.loads(text)

    def allowlist(item: dict[str, Any]) -> Allowlist:
        return Allowlist(
            target=item["target"],
            sources=tuple(item["sources"]),
            stopwords=tuple(item["stopwords"]),
            require_all=item["require_all"],
        )

    return RuleSet(
        rules=tuple(
            Rule(
                **{
                    **item,
                    "keywords": tuple(item["keywords"]),
                    "allowlists": tuple(allowlist(a) for a in item["allowlists"]),
                    "starts": tuple(item["starts"]),
                }
            )
            for item in data["rules"]
        ),
        allowlists=tuple(allowlist(item) for item in data["allowlists"]),
        skipped=tuple(SkippedRule(**item) for item in data["skipped"]),
    )


def default_rules_loaded() -> bool:
    """Whether :func:`default_rules` has been compiled in this process (then it is instant)."""
    return default_rules.cache_info().currsize > 0


class _Skip(Exception):
    pass


def _rule(table: Mapping[str, Any], rule_id: str, *, extra_allowlists: Iterable[Allowlist]) -> Rule:
    where = f"rule {rule_id}"
    regex = _get(table, "regex", str, where=where, default="")
    if _get(table, "path", str, where=where, default=""):
        raise _Skip("scoped to file paths, which tool output does not have")
    if not regex:
        raise _Skip("matches file paths only")
    if _get(table, "required", list, where=where, default=[]) or table.get("skipReport"):
        raise _Skip("composite rules (required / skipReport) are not supported")
    keywords = tuple(
        str(keyword).lower() for keyword in _get(table, "keywords", list, where=where, default=[])
    )
    entropy = _get(table, "entropy", (int, float), where=where, default=0)
    secret_group = _get(table, "secretGroup", int, where=where, default=0)
    allowlists = [
        allowlist
        for allowlist_table in _allowlist_tables(table, "allowlist", "allowlists", where=where)
        for allowlist in [_allowlist(allowlist_table, where=f"{where} allowlist")]
        if allowlist is not None
    ]
    allowlists.extend(extra_allowlists)
    rest, prefix_class, prefix_max = _split_lazy_prefix(regex)
    try:
        translated = translate_re2(rest)  # once: translating is a third of loading the rules
        groups = compile_translated(translated, rest).groups
        prefix = _checked(prefix_class) if prefix_class else ""
    except UntranslatableRegex as exc:
        raise _Skip(f"untranslatable: {exc}") from None
    if secret_group > groups:
        raise RuleSetError(f"{where}: secretGroup {secret_group} but the regex has fewer groups")
    parsed = _parsed(translated)  # once, for both analyses
    min_width, max_width = _widths(parsed)
    starts = _literal_starts(parsed)
    return Rule(
        id=rule_id,
        regex=translated,
        keywords=keywords,
        entropy=float(entropy) or None,
        secret_group=secret_group,
        allowlists=tuple(allowlists),
        prefix=prefix,
        prefix_max=prefix_max,
        starts=_shortest_starts(starts),
        min_width=min_width,
        max_width=max_width,
    )


def _checked(pattern: str) -> str:
    """The Python spelling of an RE2 pattern, shown to compile (else UntranslatableRegex)."""
    translated = translate_re2(pattern)
    compile_translated(translated, pattern)
    return translated


def _shortest_starts(starts: frozenset[str] | None) -> tuple[str, ...]:
    """The strings of ``starts`` that no other one of them starts with (where those occur, the
    longer ones may), sorted; none when one cannot be searched for exactly (see ``_prefilter``:
    not ASCII, or holding ``?``)."""
    if starts is None or not all(start.isascii() and "?" not in start for start in starts):
        return ()
    return tuple(sorted(s for s in starts if not any(s != t and s.startswith(t) for t in starts)))


def _split_lazy_prefix(regex: str) -> tuple[str, str, int]:
    """Split ``(?i)[\\w.-]{0,50}?(?i:[\\w.-]{0,50}?REST`` into (``(?i)(?i:REST``, class, 100).

    Consecutive lazy repeats of one class, at the start or right after flag groups that open
    there, add up; the class must be the same each time."""
    kept = ""
    rest = regex
    prefix_class = ""
    total = 0
    while True:
        flags = _BARE_FLAGS.match(rest) or _FLAG_GROUP_OPEN.match(rest)
        if flags:
            kept += flags.group(0)
            rest = rest[flags.end() :]
            continue
        lazy = _LAZY_PREFIX.match(rest)
        if lazy is None or (prefix_class and lazy.group(1) != prefix_class):
            break
        prefix_class = lazy.group(1)
        total += int(lazy.group(2))
        rest = rest[lazy.end() :]
    if not prefix_class:
        return regex, "", 0
    # A flag in force over the prefix applies to the class too.
    class_flags = "".join(_BARE_FLAGS.findall(kept))
    return kept + rest, class_flags + prefix_class, total


def _allowlist_tables(
    table: Mapping[str, Any], single: str, many: str, *, where: str
) -> list[Mapping[str, Any]]:
    tables: list[Any] = list(_get(table, many, list, where=where, default=[]))
    if single in table:
        tables.append(_get(table, single, dict, where=where))
    for item in tables:
        if not isinstance(item, dict):
            raise RuleSetError(f"{where}: an allowlist is not a table")
    return tables


def _allowlist(table: Mapping[str, Any], *, where: str) -> Allowlist | None:
    """The allowlist, or None when it can never apply to tool output (it needs a path or commit)."""
    condition = _get(table, "condition", str, where=where, default="OR").upper()
    if condition not in ("OR", "AND"):
        raise RuleSetError(f"{where}: condition must be OR or AND, not {condition!r}")
    target_name = _get(table, "regexTarget", str, where=where, default="") or "secret"
    target = _TARGETS.get(target_name)
    if target is None:
        raise RuleSetError(f"{where}: unknown regexTarget {target_name!r}")
    needs_location = bool(
        _get(table, "paths", list, where=where, default=[])
        or _get(table, "commits", list, where=where, default=[])
    )
    if condition == "AND" and needs_location:
        return None
    sources: list[str] = []
    for regex in _get(table, "regexes", list, where=where, default=[]):
        try:
            sources.append(_checked(str(regex)))
        except UntranslatableRegex as exc:
            # Ignoring an allowlist entry can only redact more, never less.
            logger.warning("%s: allowlist regex ignored: %s", where, exc)
    stopwords = tuple(
        str(word).lower() for word in _get(table, "stopwords", list, where=where, default=[])
    )
    if not sources and not stopwords:
        return None
    return Allowlist(
        target=target,
        sources=tuple(sources),
        stopwords=stopwords,
        require_all=condition == "AND",
    )


_MISSING: Final = object()


def _get(
    table: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    *,
    where: str,
    default: Any = _MISSING,
) -> Any:
    if key not in table:
        if default is _MISSING:
            raise RuleSetError(f"{where}: missing {key!r}")
        return default
    value = table[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise RuleSetError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


# The stdlib's own regex parser answers "what must every match start with" and "how long can a
# match be". It is private (re._parser since 3.11), so any failure here only costs speed: the
# rule is then scanned in full.
def _parser() -> Any:
    try:
        return importlib.import_module("re._parser")
    except ImportError:  # pragma: no cover - a Python without it
        return None


def _parsed(translated: str) -> Any:
    """The private parser's tree of ``translated`` (None if it cannot say)."""
    parser = _parser()
    if parser is None:  # pragma: no cover - see _parser
        return None
    try:
        return parser.parse(translated, FLAGS)
    except Exception:  # pragma: no cover - see _parser
        return None


def _widths(parsed: Any) -> tuple[int, int | None]:
    if parsed is None:  # pragma: no cover - see _parser
        return 0, None
    try:
        low, high = parsed.getwidth()
    except Exception:  # pragma: no cover - see _parser
        return 0, None
    return int(low), None if high >= _parser().MAXREPEAT else int(high)


def _literal_starts(parsed: Any) -> frozenset[str] | None:
    """Lower-cased strings one of which every match starts with, or None if that is unknown."""
    if parsed is None:  # pragma: no cover - see _parser
        return None
    try:
        constants = importlib.import_module("re._constants")
        starts = _Starts(constants).of(list(parsed))
    except Exception:  # pragma: no cover - see _parser
        return None
    if starts is None or "" in starts[0]:
        return None
    return frozenset(start.lower() for start in starts[0])


@attrs.frozen
class _Starts:
    """Literal prefixes of parsed regex items (lower-cased later, so case flags do not matter)."""

    c: Any

    def of(self, items: Sequence[Any]) -> tuple[set[str], bool]:
        """(prefixes, whole): every match of `items` starts with one of the prefixes; `whole`
        says the prefixes are the complete matches (the items are literal throughout)."""
        c = self.c
        prefixes = {""}
        for op, arg in items:
            step: tuple[set[str], bool] | None
            if op is c.AT:
                step = ({""}, True)
            elif op is c.LITERAL:
                step = ({chr(arg)}, True)
            elif op is c.IN:
                step = self.small_class(arg)
            elif op is c.SUBPATTERN:
                step = self.of(list(arg[-1]))
            elif op is c.BRANCH:
                step = self.branch(arg[1])
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
                step = self.repeat(*arg)
            else:
                step = None
            if step is None:
                return prefixes, False
            extended = {head + tail for head in prefixes for tail in step[0]}
            if len(extended) > _MAX_PREFIXES:
                return prefixes, False
            prefixes = extended
            if not step[1]:
                return prefixes, False
        return prefixes, True

    def small_class(self, members: Sequence[Any]) -> tuple[set[str], bool] | None:
        c = self.c
        chars: set[str] = set()
        for op, arg in members:
            if op is c.LITERAL:
                chars.add(chr(arg))
            elif op is c.RANGE and arg[1] - arg[0] < 4:
                chars.update(chr(code) for code in range(arg[0], arg[1] + 1))
            else:
                return None
        # [Aa] is one letter in two cases: one prefix once lower-cased.
        if len({char.lower() for char in chars}) > 2:
            return None
        return chars, True

    def branch(self, alternatives: Sequence[Any]) -> tuple[set[str], bool]:
        steps = [self.of(list(alternative)) for alternative in alternatives]
        return set().union(*(step[0] for step in steps)), all(step[1] for step in steps)

    def repeat(self, low: int, high: int, item: Any) -> tuple[set[str], bool] | None:
        step = self.of(list(item))
        if low == 0 and high == 1 and step[1]:
            return step[0] | {""}, True
        if low >= 1:
            return step[0], low == high == 1 and step[1]
        return None


if __name__ == "__main__":
    # Make the precomputed rule set again, after gitleaks.toml or the analysis changed.
    target = importlib.resources.files(__package__ or "trio_sandbox.redact").joinpath(PRECOMPUTED)
    with importlib.resources.as_file(target) as path:
        path.write_text(default_rules_json())
