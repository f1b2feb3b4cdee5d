"""Placeholders shaped like their secrets: as long, specials in place, prefix and classes kept,
never the value, never another secret's placeholder, and always one the egress proxy accepts
(``InjectedSecret`` checks the same shape rules in the warden)."""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_sandbox.egress import InjectedSecret
from trio_sandbox.redact import (
    VENDOR_PREFIXES,
    PlaceholderError,
    SecretRedactor,
    default_rules,
    shaped_placeholder,
)

no_deadline = settings(deadline=None)
ALNUM = string.ascii_letters + string.digits
# Seeded generators (a Hypothesis random may repeat one choice; the product draws from the OS).
seeds = st.integers(0, 2**32).map(random.Random)
VISIBLE = "".join(chr(code) for code in range(0x21, 0x7F))


def special(character: str) -> bool:
    return character not in ALNUM


def klass(character: str) -> str:
    if character.isdigit():
        return "digit"
    return "lower" if character.islower() else "upper"


def body(alphabet: str, size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=size, max_size=size)


# The shapes gitleaks knows (and the design lists).
vendor_formats = st.one_of(
    body(ALNUM, 36).map(lambda rest: "ghp_" + rest),
    st.tuples(body(ALNUM, 22), body(ALNUM, 59)).map(lambda p: f"github_pat_{p[0]}_{p[1]}"),
    st.tuples(body(ALNUM + "-_", 74), body(ALNUM + "-_", 74)).map(
        lambda p: f"sk-proj-{p[0]}T3BlbkFJ{p[1]}"
    ),
    st.tuples(body(ALNUM, 20), body(ALNUM, 20)).map(lambda p: f"sk-{p[0]}T3BlbkFJ{p[1]}"),
    body(ALNUM + "-_", 93).map(lambda rest: f"sk-ant-api03-{rest}AA"),
    st.tuples(body(string.digits, 12), body(ALNUM, 24)).map(lambda p: f"xoxb-{p[0]}-{p[1]}"),
    body(string.ascii_uppercase + "234567", 16).map(lambda rest: "AKIA" + rest),
    body("0123456789abcdef", 40),
    body(string.ascii_letters + string.digits + "+/", 43).map(lambda rest: rest + "="),
    st.tuples(body(ALNUM + "-_", 30), body(ALNUM + "-_", 43)).map(
        lambda p: f"eyJhbGciOiJIUzI1NiJ9.eyJ{p[0]}.{p[1]}"
    ),
)
# ... and any visible ASCII at all.
formats = vendor_formats | st.text(VISIBLE, min_size=8, max_size=120).filter(
    lambda text: any(c in ALNUM for c in text)
)


@no_deadline
@given(formats, seeds)
def test_the_shape_is_kept_and_the_value_never_is(value: str, rng: random.Random) -> None:
    placeholder = shaped_placeholder(value, rng)
    assert placeholder != value
    assert len(placeholder) == len(value)
    for shown, real in zip(placeholder, value, strict=True):
        if special(real):
            assert shown == real
        else:
            assert not special(shown)
            assert klass(shown) == klass(real)
    prefix = next((p for p in VENDOR_PREFIXES if value.startswith(p)), "")
    if any(c in ALNUM for c in value[len(prefix) :]):
        assert placeholder.startswith(prefix)  # else the prefix is all there is to replace
    if value.startswith("eyJ") and value.count(".") == 2:
        assert placeholder.rsplit(".", 1)[0] == value.rsplit(".", 1)[0]
    hex_letters = set("abcdef")
    if set(value) <= set("0123456789abcdef"):
        assert set(placeholder) <= set("0123456789") | hex_letters
    # The warden's own check of the same rules accepts it.
    InjectedSecret("TOKEN", value, placeholder, ("api.example.test",))


@no_deadline
@given(st.text(ALNUM, min_size=8, max_size=9), seeds)
def test_it_avoids_the_other_placeholders(value: str, rng: random.Random) -> None:
    first = shaped_placeholder(value, rng)
    second = shaped_placeholder(value, rng, avoid={first})
    assert second not in {first, value}


def test_a_value_that_is_only_a_kept_infix_still_gets_placeholders() -> None:
    # OpenAI's marker alone: kept inside a key, replaced when it is all there is.
    rng = random.Random(0)
    first = shaped_placeholder("T3BlbkFJ", rng)
    second = shaped_placeholder("T3BlbkFJ", rng, avoid={first})
    assert len({first, second, "T3BlbkFJ"}) == 3


def test_a_value_with_nothing_to_replace_is_refused_without_naming_it() -> None:
    with pytest.raises(PlaceholderError) as caught:
        shaped_placeholder("-_-_-_-_-_", random.Random(0))
    assert "-_-_-_-_-_" not in str(caught.value)
    assert "10 characters" in str(caught.value)


def test_a_prefix_with_nothing_after_it_is_not_kept() -> None:
    # Only "ghp_" and specials would be left to keep: the prefix itself is replaced.
    placeholder = shaped_placeholder("ghp_____", random.Random(0))
    assert placeholder != "ghp_____"
    assert placeholder.endswith("_____")


@pytest.mark.parametrize(
    "value",
    [
        "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5",
        "AKIA" + "QWERTYUIOPASDFGH",
        "xoxb-" + "123456789012-" + "abcdefghijklmnopqrstuvwx",
        "glpat-" + "aB3dE5fG7hJ9kL1mN3pQ",
    ],
)
def test_the_redactor_rules_that_find_the_value_find_the_placeholder(value: str) -> None:
    rng = random.Random(7)
    placeholder = shaped_placeholder(value, rng)
    redactor = SecretRedactor()
    assert value not in redactor.redact_text(f"token = {value}")
    assert placeholder not in redactor.redact_text(f"token = {placeholder}")


_RULES = default_rules().rules


@settings(deadline=None, max_examples=300)
@given(vendor_formats, seeds)
def test_a_rule_pattern_that_finds_the_value_finds_the_placeholder(
    value: str, rng: random.Random
) -> None:
    """Clients that check a token's format accept the placeholder where they accept the value:
    every gitleaks pattern that matches the value matches its placeholder (entropy aside)."""
    placeholder = shaped_placeholder(value, rng)
    line = "export TOKEN={}"
    for rule in _RULES:
        if rule.pattern.search(line.format(value)):
            assert rule.pattern.search(line.format(placeholder)), (rule.id, placeholder)
