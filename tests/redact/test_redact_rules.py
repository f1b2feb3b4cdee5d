"""Loading gitleaks configurations: translation, skipped rules, keywords, entropy, secretGroup
and allowlists as gitleaks applies them."""

from __future__ import annotations

import importlib.resources
import json
import logging
import re
import warnings

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_sandbox.redact import (
    PLACEHOLDER,
    RuleSetError,
    SecretRedactor,
    UntranslatableRegex,
    default_rules,
    load_rules,
    translate_re2,
)
from trio_sandbox.redact._keywords import StringIndex
from trio_sandbox.redact._redactor import _run
from trio_sandbox.redact._rules import PRECOMPUTED, default_rules_json, rules_from_json


def redact_with(toml: str, text: str) -> str:
    return SecretRedactor(load_rules(toml)).redact_text(text)


def test_default_rules_load_with_their_skips_counted(caplog: pytest.LogCaptureFixture) -> None:
    rules = default_rules()
    assert len(rules.rules) > 200
    assert {skip.id for skip in rules.skipped} == {
        "freemius-secret-key",
        "hashicorp-tf-password",
        "kubernetes-secret-yaml",
        "nuget-config-password",
        "pkcs12-file",
    }
    assert all("path" in skip.reason for skip in rules.skipped)
    # Most rules run only where a keyword starts; the rest are scanned in full.
    assert sum(rule.anchored for rule in rules.rules) > 180


def test_the_precomputed_rules_are_what_gitleaks_toml_makes() -> None:
    # The shipped, translated and analysed rule set cannot drift from gitleaks.toml (or from
    # the translation and analysis): made again here, it must be the same text.
    shipped = importlib.resources.files("trio_sandbox.redact").joinpath(PRECOMPUTED).read_text()
    assert shipped == default_rules_json(), (
        "regenerate: .venv/bin/python -m trio_sandbox.redact._rules"
    )
    # And reading it back gives every field of every rule as written.
    assert json.loads(json.dumps(attrs.asdict(rules_from_json(shipped)))) == json.loads(shipped)


def test_every_vendored_pattern_compiles_without_warnings() -> None:
    rules = default_rules()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for rule in rules.rules:
            re.compile(rule.pattern.pattern, rule.pattern.flags)


@pytest.mark.parametrize(
    ("re2", "python"),
    [
        (r"\b(p8e-(?i)[a-z0-9]{32})", r"\b(p8e-(?i:[a-z0-9]{32}))"),
        (r"ab(?i)c|d", r"ab(?i:c)|(?i:d)"),
        (r"(?i)^true|false|null$", r"(?i:^true)|(?i:false)|(?i:null\Z)"),
        (r"x\z", r"x\Z"),
        (r"[[:alnum:]_]", r"[0-9A-Za-z\_]"),
        (r"[\w.-/]", r"[\w\.-\/]"),
        (r"\Qa.b\E+", r"a\.b+"),
        (r"a{,3}b{2}c{x}", r"a\{,3}b{2}c\{x}"),
        (r"\x{263a}\101", "\u263a" + "A"),
        (r"(?m)^a$", r"(?m:^a$)"),
        (r"(?P<name>x)(?<other>y)", r"(?P<name>x)(?P<other>y)"),
    ],
)
def test_re2_translation(re2: str, python: str) -> None:
    assert translate_re2(re2) == python


@pytest.mark.parametrize(
    ("re2", "why"),
    [
        (r"\pL+", "Unicode classes"),
        (r"(?U)a+", "unsupported flags"),
        (r"a(?=b)", "look-around"),
        (r"(a)\1", "backreferences"),
        (r"[a", "missing"),
        (r"a)", "unbalanced"),
    ],
)
def test_untranslatable_re2(re2: str, why: str) -> None:
    with pytest.raises(UntranslatableRegex, match=why):
        translate_re2(re2)


def test_end_of_text_means_end_of_text() -> None:
    # RE2's $ is \z: "x$" does not match before a final newline, as Python's $ would.
    pattern = re.compile(translate_re2("x$"))
    assert pattern.search("x\n") is None
    assert pattern.search("x") is not None


RULE = """
[[rules]]
id = "demo-token"
regex = '''\\b(demo_[a-z0-9]{16})\\b'''
keywords = ["demo_"]
"""


def test_a_rule_with_an_untranslatable_regex_is_skipped_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    toml = (
        RULE
        + """
[[rules]]
id = "unicode"
regex = '''\\pL{30}'''
keywords = ["x"]
"""
    )
    with caplog.at_level(logging.INFO, logger="trio_sandbox.redact"):
        rules = load_rules(toml)
    assert [rule.id for rule in rules.rules] == ["demo-token"]
    assert rules.skipped[0].id == "unicode"
    assert "redaction rule unicode skipped: untranslatable" in caplog.text
    assert "skipped 1: 1 untranslatable, 0 other" in caplog.text


def test_keywords_gate_a_rule() -> None:
    toml = """
[[rules]]
id = "needs-keyword"
regex = '''\\b[0-9a-f]{32}\\b'''
keywords = ["session"]
"""
    value = "0123456789abcdef0123456789abcdef"
    assert redact_with(toml, f"id {value}") == f"id {value}"
    assert value not in redact_with(toml, f"SESSION id {value}")


def test_entropy_floor_and_secret_group() -> None:
    toml = """
[[rules]]
id = "pair"
regex = '''(user)=(\\w+) (pass)=(\\w{8,})'''
secretGroup = 4
entropy = 3.0
keywords = ["pass="]
"""
    assert redact_with(toml, "user=bob pass=aaaabbbbaaaa") == "user=bob pass=aaaabbbbaaaa"
    redacted = redact_with(toml, "user=bob pass=Xq7Lm2Vp9Rz4")
    assert re.fullmatch(r"user=bob pass=\[REDACTED_SECRET:pair:[0-9a-f]{12}\]", redacted)


@pytest.mark.parametrize(
    ("allowlist", "allowed", "kept_out"),
    [
        ("stopwords = ['example']", "demo_exampleabcdef123", "demo_a1b2c3d4e5f6a7b8"),
        ("regexes = ['''^demo_0''']", "demo_0123456789abcdef", "demo_a1b2c3d4e5f6a7b8"),
        (
            "regexTarget = 'line'\nregexes = ['''# test fixture''']",
            "demo_0123456789abcdef # test fixture",
            "demo_0123456789abcdef # prod",
        ),
        # AND with a path can never hold for tool output, which has no path.
        (
            "condition = 'AND'\npaths = ['''.*''']\nstopwords = ['example']",
            None,
            "demo_exampleabcdef123",
        ),
    ],
)
def test_allowlists(allowlist: str, allowed: str | None, kept_out: str) -> None:
    toml = RULE + "[[rules.allowlists]]\n" + allowlist + "\n"
    if allowed is not None:
        assert redact_with(toml, allowed) == allowed
    assert PLACEHOLDER.search(redact_with(toml, kept_out))


def test_global_allowlist_applies_to_every_rule() -> None:
    toml = "[allowlist]\nstopwords = ['cafe']\n" + RULE
    assert redact_with(toml, "demo_cafe0123456789ab") == "demo_cafe0123456789ab"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[[rules]\n", "not valid TOML"),
        ("[[rules]]\nregex = 'x'\n", "missing 'id'"),
        ("[[rules]]\nid = 'a'\nregex = 'x'\nentropy = 'high'\n", "'entropy' has the wrong type"),
        ("[[rules]]\nid = 'a'\nregex = '(x)'\nsecretGroup = 3\n", "secretGroup 3"),
        (
            "[[rules]]\nid = 'a'\nregex = 'x'\n[[rules.allowlists]]\ncondition = 'XOR'\n",
            "condition",
        ),
    ],
)
def test_malformed_rule_sets(toml: str, message: str) -> None:
    with pytest.raises(RuleSetError, match=message):
        load_rules(toml)


def _naive(strings: tuple[str, ...], text: str) -> list[list[int]]:
    return [[i for i in range(len(text)) if text.startswith(s, i)] for s in strings]


@given(
    st.lists(st.text(alphabet="ab_-c", min_size=1, max_size=5), min_size=1, max_size=8),
    st.text(alphabet="ab_-cd", max_size=120),
    st.booleans(),
)
def test_string_index_finds_every_occurrence(
    strings: list[str], text: str, sensitive: bool
) -> None:
    index = StringIndex.build(strings, case_sensitive=sensitive)
    assert _run(index.occurrences(text)) == _naive(index.strings, text)


def test_string_index_across_its_windows() -> None:
    # Strings that straddle the 64 KiB windows of a pass, at every offset around the edges.
    strings = ("xoxb-", "-----begin", "ey", "api_key")
    pieces = []
    for edge in (1, 2, 3):
        for shift in range(-12, 4):
            pieces.append((edge * 65536 + shift, strings[shift % len(strings)]))
    text = list("." * (3 * 65536 + 64))
    for position, string in pieces:
        text[position : position + len(string)] = string
    joined = "".join(text)[: 3 * 65536 + 64]
    index = StringIndex.build(strings, case_sensitive=False)
    assert _run(index.occurrences(joined)) == _naive(index.strings, joined)


def test_unanchored_rules_find_matches_across_their_windows() -> None:
    # The pattern starts with a class, so it cannot be anchored at its keyword: it is scanned
    # in 32 KiB windows. Matches sit astride every window edge, and one ends the text ($).
    toml = """
[[rules]]
id = "hex-secret"
regex = '''[0-9a-f]{8}-secret-[0-9a-f]{8}(?:\\s|$)'''
keywords = ["-secret-"]
"""
    rules = load_rules(toml)
    assert not rules.rules[0].anchored
    values = [f"{i:08x}-secret-{i * 7:08x}" for i in range(40)]
    text = list("." * (3 * 32768 + 200))
    positions = [edge * 32768 + shift for edge in (1, 2, 3) for shift in range(-30, 10, 3)]
    placed: list[tuple[int, str]] = []
    for position, value in zip(positions, values, strict=False):
        if position + len(value) + 1 <= len(text) and all(
            abs(position - other) > len(value) + 1 for other, _ in placed
        ):
            text[position : position + len(value) + 1] = value + " "
            placed.append((position, value))
    tail = "cafebabe-secret-deadbeef"
    joined = "".join(text) + tail
    redacted = SecretRedactor(rules).redact_text(joined)
    for _, value in placed:
        assert value not in redacted
    assert tail not in redacted
    assert len(PLACEHOLDER.findall(redacted)) == len(placed) + 1
