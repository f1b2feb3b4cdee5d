"""Properties of redaction over generated text with generated secrets mixed in."""

from __future__ import annotations

import random
import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.redact.redact_fakes import filler_text, text_with_secrets, touchable_secret
from trio_sandbox.redact import PLACEHOLDER, SecretRedactor

KNOWN = ["hunter2-correct-horse", "Tr0ub4dor&3xyz", "s3cret with spaces", "ünïcode-sécret"]
# Regex work varies with the text; a deadline would only measure the machine.
no_deadline = settings(deadline=None)


def redactor_with_known() -> SecretRedactor:
    redactor = SecretRedactor()
    for value in KNOWN:
        redactor.add_known_secret(value, "password")
    return redactor


@no_deadline
@given(text_with_secrets(KNOWN))
def test_restore_inverts_redact(case: tuple[str, list[str]]) -> None:
    text, _ = case
    redactor = redactor_with_known()
    assert redactor.restore_text(redactor.redact_text(text)) == text


@no_deadline
@given(text_with_secrets(KNOWN))
def test_no_secret_survives(case: tuple[str, list[str]]) -> None:
    text, secrets = case
    redacted = redactor_with_known().redact_text(text)
    for secret in secrets:
        assert secret not in redacted


@no_deadline
@given(st.one_of(text_with_secrets(KNOWN).map(lambda case: case[0]), st.text(max_size=300)))
def test_redact_is_idempotent(text: str) -> None:
    redactor = redactor_with_known()
    once = redactor.redact_text(text)
    assert redactor.redact_text(once) == once


@no_deadline
@given(
    st.lists(st.sampled_from(KNOWN[:2]) | touchable_secret(), min_size=2, max_size=4), filler_text
)
def test_touching_secrets_leave_nothing_and_nothing_broken(secrets: list[str], tail: str) -> None:
    text = " " + "".join(secrets) + " " + tail
    redactor = redactor_with_known()
    redacted = redactor.redact_text(text)
    for secret in secrets:
        assert secret not in redacted
    assert redactor.restore_text(redacted) == text
    # Where the touching secrets were there are whole placeholders only: none nested or cut.
    run = redacted[1:].split(" ", 1)[0]
    assert re.fullmatch(f"(?:{PLACEHOLDER.pattern})+", run), redacted


@no_deadline
@given(st.lists(st.sampled_from(KNOWN), min_size=2, max_size=5))
def test_adjacent_known_values_each_keep_their_placeholder(values: list[str]) -> None:
    redactor = redactor_with_known()
    placeholders = [redactor.add_known_secret(value, "password") for value in values]
    assert redactor.redact_text("".join(values)) == "".join(str(p) for p in placeholders)


@no_deadline
@given(st.lists(st.integers(0, 10_000), max_size=4), text_with_secrets(KNOWN))
# A rule finds the value only after "token: "; its first occurrence starts with a known value.
@example([], ("hunter2-correct-horse01token: hunter2-correct-horse01", []))
# A rule sees the token's value only in the third leaf; the first leaf holds its bare start.
@example(
    [62, 261],
    (
        "hunter2-correct-horse eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAidGVzdC11c2Vy"
        "LTJ5VzRBY3E5IiwgImlhdCI6IDU0ODk3NzA0OH0.-ZM9TBrKrmGsNmjQ8mT3OA94HhblZa_QFPiyCEs5lkO  "
        "AKIAY2CQ7ZT6WNISIGQJ hunter2-correct-horsetoken: eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpX"
        "VCJ9.eyJzdWIiOiAidGVzdC11c2VyLTJ5VzRBY3E5IiwgImlhdCI6IDU0ODk3NzA0OH0.-ZM9TBrKrmGsNmjQ8m"
        "T3OA94HhblZa_QFPiyCEs5lkO ",
        [],
    ),
)
def test_json_leaves_are_independent(cuts: list[int], case: tuple[str, list[str]]) -> None:
    text, _ = case
    points = sorted({cut % (len(text) + 1) for cut in cuts})
    leaves = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    redactor = redactor_with_known()
    redacted = redactor.redact_json(
        {"content": [{"type": "text", "text": leaf} for leaf in leaves]}
    )
    # Each leaf is what redacting it alone gives (the same placeholders, one map).
    assert redacted == {
        "content": [{"type": "text", "text": redactor.redact_text(leaf)} for leaf in leaves]
    }
    assert redactor.restore_json(redacted) == {
        "content": [{"type": "text", "text": leaf} for leaf in leaves]
    }


@no_deadline
@given(text_with_secrets(KNOWN), st.lists(st.integers(0, 10_000), min_size=1, max_size=3))
def test_placeholders_split_across_leaves_are_not_restored(
    case: tuple[str, list[str]], cuts: list[int]
) -> None:
    text, secrets = case
    redactor = redactor_with_known()
    redacted = redactor.redact_text(text)
    points = sorted({cut % (len(redacted) + 1) for cut in cuts})
    pieces = [redacted[a:b] for a, b in zip([0, *points], [*points, len(redacted)], strict=True)]
    restored = redactor.restore_json(pieces)
    assert restored == [redactor.restore_text(piece) for piece in pieces]
    assert isinstance(restored, list)
    for piece, leaf in zip(pieces, restored, strict=True):
        whole = {match.group(0) for match in PLACEHOLDER.finditer(piece)}
        for secret in secrets:
            if secret in str(leaf):
                # Only a placeholder that is whole in this leaf gives its secret back.
                assert any(secret in redactor.restore_text(p) for p in whole) or secret in piece


@no_deadline
@given(st.integers(0, 2**32))
def test_same_value_same_placeholder_ids_not_derived_from_value(seed: int) -> None:
    token = "ghp_" + "".join(random.Random(seed).choices("abcdefghXYZ0123456789", k=36))
    first, second = SecretRedactor(), SecretRedactor()
    once = first.redact_text(f"a {token} b")
    assert first.redact_text(f"c {token}") == "c " + once[2:-2]
    # Another redactor gives the same value another id (random per value, not a hash).
    assert second.redact_text(f"a {token} b") != once


def test_a_value_a_rule_found_once_is_redacted_wherever_it_is_in_the_text() -> None:
    # The rule sees the value only after "token: "; before, a known value is its prefix and
    # would have left the value's last characters in the clear.
    redactor = redactor_with_known()
    text = "hunter2-correct-horse01 and token: hunter2-correct-horse01 and hunter2-correct-horse"
    redacted = redactor.redact_text(text)
    shown = PLACEHOLDER.sub("", redacted)  # (a placeholder's random id may hold "01")
    assert "01" not in shown, redacted
    assert "hunter2" not in shown, redacted
    assert redactor.redact_text(text) == redacted
    assert redactor.restore_text(redacted) == text


def test_a_value_found_again_after_a_cut_is_redacted_everywhere_too() -> None:
    # Cutting the password out ends the text right after the stripe key on its line, where
    # the stripe rule then finds it; its other occurrence must follow.
    stripe, password = "sk_live_Q1w2E3r4T5y6U7i8O9p0", "-x9Kq2Lm7Pz4Rt8Wv"
    text = f"password = '{password}'\n{stripe}{password}\nlater: {stripe}-foo\n"
    redactor = SecretRedactor()
    redacted = redactor.redact_text(text)
    assert stripe not in redacted, redacted
    assert password not in redacted, redacted
    assert redactor.redact_text(text) == redacted
    assert redactor.restore_text(redacted) == text


def test_a_value_repeated_all_over_its_text_is_redacted_at_every_place() -> None:
    # A rule finds "0000000000000000" once; the text holds it 12,500 times more, end to end:
    # each is its own placeholder (touching findings stay apart), none overlapping another.
    text = "confluent.=0000000000000000;\n" + "0" * 200_000
    redactor = SecretRedactor()
    redacted = redactor.redact_text(text)
    assert "0" * 16 not in redacted
    assert redacted.count("[REDACTED_SECRET:") == 12_501
    assert redactor.restore_text(redacted) == text


def test_a_value_found_in_one_string_is_redacted_in_the_others_of_the_message() -> None:
    # No rule sees the bare value in the first string; the second shows it is a token.
    value = "Zq3k9TxW2mN8vB4cR7yL1pD6sH0jF5gA"
    redactor = SecretRedactor()
    redacted = redactor.redact_json(
        {"content": [{"type": "text", "text": f"id {value}"}, {"text": f"token: {value}"}]}
    )
    assert value not in str(redacted), redacted
    assert redactor.restore_json(redacted) == {
        "content": [{"type": "text", "text": f"id {value}"}, {"text": f"token: {value}"}]
    }
