"""The known-value index: built one value at a time, it finds what an index built at once (and a
plain search) finds, a value added later is found everywhere, and a removed one nowhere."""

from __future__ import annotations

import re
from collections.abc import Generator

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_sandbox.redact import MIN_KNOWN_SECRET_LENGTH, PLACEHOLDER, SecretRedactor
from trio_sandbox.redact._known import KnownIndex
from trio_sandbox.redact._redactor import _run

no_deadline = settings(deadline=None)
SOURCE = "upstream"

# Few letters: values share their pieces, overlap and repeat inside each other and the text.
narrow_value = st.text("ab-", min_size=MIN_KNOWN_SECRET_LENGTH, max_size=14)
# Values as they come: generated passwords, environment values with spaces, non-ASCII, PEM-long.
wide_value = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]),
    min_size=MIN_KNOWN_SECRET_LENGTH,
    max_size=200,
).filter(lambda value: not PLACEHOLDER.search(value))
known_value = narrow_value | wide_value


def plain_search(values: list[str], text: str) -> list[tuple[int, str]]:
    return sorted(
        (start, value)
        for value in set(values)
        for start in range(len(text))
        if text.startswith(value, start)
    )


@st.composite
def values_and_text(draw: st.DrawFn) -> tuple[list[str], str]:
    values = draw(st.lists(known_value, min_size=1, max_size=8))
    parts = draw(st.lists(st.sampled_from(values) | st.text("ab- x", max_size=10), max_size=12))
    return values, "".join(parts)


def readable(redactor: SecretRedactor, text: str) -> str:
    """``text`` with each placeholder shown as the value it stands for (its id is random)."""

    def value(match: re.Match[str]) -> str:
        return "<<" + redactor.restore_text(match.group(0), source=SOURCE) + ">>"

    return PLACEHOLDER.sub(value, text)


@no_deadline
@given(values_and_text())
def test_the_index_finds_what_a_plain_search_finds(case: tuple[list[str], str]) -> None:
    values, text = case
    index = KnownIndex()
    for value in values:
        index.add(value, "password")
    assert _run(index.occurrences(text)) == plain_search(values, text)


@no_deadline
@given(values_and_text(), st.data())
def test_removed_values_are_found_nowhere(case: tuple[list[str], str], data: st.DataObject) -> None:
    values, text = case
    index = KnownIndex()
    for value in values:
        index.add(value, "password")
    removed = data.draw(st.lists(st.sampled_from(values), unique=True))
    for value in removed:
        assert index.remove(value)
        assert not index.remove(value)
        assert value not in index
    kept = [value for value in values if value not in removed]
    assert len(index) == len(set(kept))
    assert _run(index.occurrences(text)) == plain_search(kept, text)
    # Added back, a removed value is found again.
    for value in removed:
        assert index.add(value, "password")
    assert _run(index.occurrences(text)) == plain_search(values, text)


@no_deadline
@given(st.lists(values_and_text(), min_size=1, max_size=4))
def test_redacting_with_an_index_built_one_value_at_a_time_equals_one_built_at_once(
    cases: list[tuple[list[str], str]],
) -> None:
    # One redactor learns the values between redactions (and keeps its memo of clean texts
    # through them); the other knows them all before its first. Every text redacted after the
    # last value came in reads the same in both.
    growing = SecretRedactor()
    for values, text in cases:
        growing.redact_text(text, source=SOURCE)
        for value in values:
            growing.add_known_secret(value, "password", source=SOURCE)
            growing.redact_text(text, source=SOURCE)
    at_once = SecretRedactor()
    for values, _ in cases:
        for value in values:
            at_once.add_known_secret(value, "password", source=SOURCE)
    for _, text in cases:
        late = growing.redact_text(text, source=SOURCE)
        first = at_once.redact_text(text, source=SOURCE)
        assert readable(growing, late) == readable(at_once, first)
        for values, _ in cases:
            for value in values:
                assert value not in late


@no_deadline
@given(st.lists(known_value, min_size=1, max_size=20), st.data())
def test_a_value_added_later_is_found_in_texts_found_clean_before(
    values: list[str], data: st.DataObject
) -> None:
    redactor = SecretRedactor()
    for value in values[:-1]:
        redactor.add_known_secret(value, "password")
    late = values[-1]
    before = data.draw(st.text("xyz ", max_size=20))
    after = data.draw(st.text("xyz ", max_size=20))
    text = before + late + after
    # Found clean with and without the rules (remembered as clean, if short), unless the value
    # holds a known one or a rule's match.
    redactor.redact_text(text, rules=False)
    redactor.redact_text(text)
    placeholder = redactor.add_known_secret(late, "password")
    for rules in (False, True):
        redacted = redactor.redact_text(text, rules=rules)
        assert late not in redacted
    assert redactor.restore_text(placeholder) == late


def test_a_value_added_while_a_text_is_scanned_is_found_in_it_next_time() -> None:
    # A scan in steps (redact_text_async) can see a value come in half-way: what it finds clean
    # then is not remembered as clean, so the next redaction finds the value. The value comes in
    # after each step of the scan in turn.
    text = "a text holding late-known-value, found clean before the value was known"

    def started_scan() -> tuple[SecretRedactor, Generator[None, None, str]]:
        redactor = SecretRedactor()
        redactor.add_known_secret("first-known-value", "password")
        return redactor, redactor._text_steps(text, None, True)

    _, whole = started_scan()
    steps_in_scan = 0
    while True:
        try:
            next(whole)
        except StopIteration:
            break
        steps_in_scan += 1
    assert steps_in_scan > 1
    for steps_before in range(steps_in_scan):
        redactor, steps = started_scan()
        for _ in range(steps_before + 1):
            next(steps)
        placeholder = redactor.add_known_secret("late-known-value", "password")
        assert _run(steps) in (text, text.replace("late-known-value", placeholder))
        assert redactor.redact_text(text) == text.replace("late-known-value", placeholder)


def test_values_are_found_at_the_text_s_edges_wherever_their_anchor_is() -> None:
    # The index stops at a value's rarest character (here "~") and reads the characters around
    # it: the anchor at the value's first or last character, or near either, at the very start
    # or end of the text.
    for length in (MIN_KNOWN_SECRET_LENGTH, 9, 15, 40):
        for at in range(length):
            value = "e" * at + "~" + "e" * (length - at - 1)
            index = KnownIndex()
            index.add(value, "password")
            for pad in range(3):
                for text in (value + "." * pad, "." * pad + value, "." * pad + value + value):
                    assert _run(index.occurrences(text)) == plain_search([value], text)
            redactor = SecretRedactor()
            placeholder = redactor.add_known_secret(value, "password")
            assert redactor.redact_text(f"{value}.{value}", rules=False) == (
                f"{placeholder}.{placeholder}"
            )


def test_adding_a_value_touches_only_its_own_entries() -> None:
    # What makes adding cost the value's own length, however many are known: one entry for the
    # value, nothing made again from the values known before.
    index = KnownIndex()
    for number in range(2000):
        index.add(f"Password-{number:06d}-generated", "password")
    index.add("an anchor ~ comes in", "password")  # a new anchor character: the class alone
    lists = {
        (char, shift, key): (values, len(values))
        for char, shifts in index._entries.items()
        for shift, keys in shifts.items()
        for key, values in keys.items()
    }
    index.add("Password-later-generated", "password")
    grown = [
        where
        for char, shifts in index._entries.items()
        for shift, keys in shifts.items()
        for key, values in keys.items()
        if (where := (char, shift, key)) not in lists
        or lists[where][0] is not values
        or lists[where][1] != len(values)
    ]
    assert len(grown) == 1
    assert _run(index.occurrences("x Password-later-generated y")) == [
        (2, "Password-later-generated")
    ]


def test_a_value_removed_while_a_text_is_scanned_leaves_the_scan_whole() -> None:
    # A scan in steps may pause between windows of the text; a value removed meanwhile (its
    # anchor character with it) is simply not found after the pause.
    index = KnownIndex()
    index.add("kept-value-Q-here", "password")
    index.add("gone-value-~-here", "password")
    text = ("kept-value-Q-here gone-value-~-here " * 4000)[: 3 * 64 * 1024]
    scan = index.occurrences(text)
    next(scan)
    assert index.remove("gone-value-~-here")
    found = _run(scan)
    assert {value for _, value in found} <= {"kept-value-Q-here", "gone-value-~-here"}
    kept = [hit for hit in found if hit[1] == "kept-value-Q-here"]
    assert kept == plain_search(["kept-value-Q-here"], text)
