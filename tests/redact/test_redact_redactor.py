"""SecretRedactor: placeholders, restore, known values, JSON leaves, the async entry point."""

from __future__ import annotations

import random
import re

import pytest
import trio
import trio.testing

from tests.redact import redact_fakes as fakes
from trio_sandbox.redact import (
    MIN_KNOWN_SECRET_LENGTH,
    JsonLike,
    KnownSecretTooShort,
    RedactionTimeout,
    SecretRedactor,
)

TOKEN = fakes.github_pat(random.Random(1))
OTHER_TOKEN = fakes.gitlab_pat(random.Random(2))


def test_placeholder_shape_and_one_placeholder_per_value() -> None:
    redactor = SecretRedactor()
    first = redactor.redact_text(f"token {TOKEN}")
    match = re.fullmatch(r"token (\[REDACTED_SECRET:github-pat:[0-9a-f]{12}\])", first)
    assert match
    assert redactor.redact_text(f"{TOKEN} again\n{TOKEN}") == f"{match[1]} again\n{match[1]}"
    assert redactor.redact_text(OTHER_TOKEN) != match[1]


def test_restore_is_one_pass_and_leaves_unknown_placeholders() -> None:
    redactor = SecretRedactor()
    inner = redactor.add_known_secret("first-known-secret", "password")
    # A value that itself contains a placeholder comes back literally, not expanded again.
    outer = redactor.add_known_secret(f"wrapping {inner} value", "password")
    assert inner is not None
    assert outer is not None
    assert redactor.restore_text(outer) == f"wrapping {inner} value"
    foreign = "[REDACTED_SECRET:github-pat:0123456789ab]"
    broken = inner[:-1]
    text = f"{foreign} {broken} {inner}"
    assert redactor.restore_text(text) == f"{foreign} {broken} first-known-secret"


def test_redacting_redacted_text_changes_nothing() -> None:
    redactor = SecretRedactor()
    redacted = redactor.redact_text(f"a={TOKEN}\nfake [REDACTED_SECRET:jwt:ffffffffffff] stays")
    assert redactor.redact_text(redacted) == redacted
    assert "[REDACTED_SECRET:jwt:ffffffffffff]" in redacted


def test_known_values_are_redacted_where_no_rule_matches() -> None:
    redactor = SecretRedactor()
    placeholder = redactor.add_known_secret("plain words here", "env:DB_PASSWORD")
    assert placeholder is not None
    assert placeholder.startswith("[REDACTED_SECRET:env:DB_PASSWORD:")
    text = "connecting with plain words here...plain words here!"
    assert redactor.redact_text(text) == f"connecting with {placeholder}...{placeholder}!"
    # Known values are exact: another case is another string.
    assert redactor.redact_text("PLAIN WORDS HERE") == "PLAIN WORDS HERE"


def test_a_text_found_clean_is_scanned_again_once_a_known_value_is_added() -> None:
    # Short clean texts are remembered (every message repeats its keys); a value made known
    # later must still be found in them, with the rules and without.
    redactor = SecretRedactor()
    text = "deploy with hunter2-but-longer"
    for rules in (True, False):
        assert redactor.redact_json({"k": text}, rules=rules) == {"k": text}
    placeholder = redactor.add_known_secret("hunter2-but-longer", "password")
    for rules in (True, False):
        assert redactor.redact_json({"k": text}, rules=rules) == {"k": f"deploy with {placeholder}"}
    # A value a rule found becomes known the same way.
    assert redactor.redact_text(f"token {TOKEN}") != f"token {TOKEN}"
    assert TOKEN not in str(redactor.redact_json({"k": TOKEN}, rules=False))


def test_known_values_longest_first() -> None:
    redactor = SecretRedactor()
    short = redactor.add_known_secret("abcdefgh12", "password")
    long = redactor.add_known_secret("abcdefgh1234", "password")
    assert redactor.redact_text("x abcdefgh1234 y abcdefgh12 z") == f"x {long} y {short} z"


def test_overlapping_known_values_become_one_span() -> None:
    redactor = SecretRedactor()
    redactor.add_known_secret("aaaabbbbcccc", "password")
    redactor.add_known_secret("ccccdddd1111", "password")
    redacted = redactor.redact_text("<aaaabbbbccccdddd1111>")
    assert re.fullmatch(r"<\[REDACTED_SECRET:password:[0-9a-f]{12}\]>", redacted)
    assert redactor.restore_text(redacted) == "<aaaabbbbccccdddd1111>"


def test_a_known_value_inside_a_rule_match_is_hidden_with_it() -> None:
    redactor = SecretRedactor()
    redactor.add_known_secret(TOKEN[4:20], "known")
    redacted = redactor.redact_text(f"x {TOKEN} y")
    assert TOKEN[4:20] not in redacted
    assert redactor.restore_text(redacted) == f"x {TOKEN} y"
    # The rule's match is longer, so its name wins.
    assert "github-pat" in redacted


def test_short_known_values_are_refused_with_a_reason() -> None:
    # Never silently left in clear: the caller refuses the value (a start, a tool result).
    redactor = SecretRedactor()
    with pytest.raises(KnownSecretTooShort) as refused:
        redactor.add_known_secret("a" * (MIN_KNOWN_SECRET_LENGTH - 1), "password")
    assert "known secret password has 7 characters, fewer than 8" in str(refused.value)
    assert "aaaaaaa" not in str(refused.value)
    assert redactor.redact_text("a banana") == "a banana"


@pytest.mark.parametrize("rule", ["", "has space", "x" * 65, "br[ack]et"])
def test_bad_rule_names_are_refused(rule: str) -> None:
    with pytest.raises(ValueError, match="rule name"):
        SecretRedactor().add_known_secret("long-enough-value", rule)


def test_bad_inputs_are_typed_errors() -> None:
    redactor = SecretRedactor()
    with pytest.raises(TypeError, match="known secret is a str, not bytes"):
        redactor.add_known_secret(b"long-enough-value")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text to redact or restore is a str, not int"):
        redactor.redact_text(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"not a JSON value at \$\.a\[1\]: set"):
        redactor.redact_json({"a": [1, set()]})  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"key at \$\.b is a int"):
        redactor.redact_json({"b": {1: "x"}})  # type: ignore[dict-item]


def test_json_leaves_keys_and_scalars() -> None:
    redactor = SecretRedactor()
    value: dict[str, JsonLike] = {
        "content": [{"type": "text", "text": f"token={TOKEN}"}],
        TOKEN: [1, 2.5, True, None, OTHER_TOKEN],
        "isError": False,
    }
    redacted = redactor.redact_json(value)
    token_placeholder = redactor.redact_text(TOKEN)
    assert redacted == {
        "content": [{"type": "text", "text": f"token={token_placeholder}"}],
        token_placeholder: [1, 2.5, True, None, redactor.redact_text(OTHER_TOKEN)],
        "isError": False,
    }
    assert redactor.restore_json(redacted) == value
    # Tool-call arguments written by the agent with placeholders in them.
    arguments = {"command": f"git push https://user:{token_placeholder}@host/repo"}
    assert redactor.restore_json(arguments) == {
        "command": f"git push https://user:{TOKEN}@host/repo"
    }


async def test_async_matches_sync_and_lets_other_tasks_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # With no time budget the scan gives way after each of its bounded steps.
    monkeypatch.setattr("trio_sandbox.redact._redactor._STEP_BUDGET", 0.0)
    rng = random.Random(5)
    lines = [f"line {i} {rng.randbytes(24).hex()} status=ok" for i in range(20_000)]
    lines[10_000] = f"export GITHUB_TOKEN={TOKEN}"
    text = "\n".join(lines)  # about 1 MiB
    redactor = SecretRedactor()
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        redacted = await redactor.redact_text_async(text)
        done = True
    assert TOKEN not in redacted
    assert redacted == redactor.redact_text(text)
    # The scan gave way to the ticker between its steps (one per keyword pass at least).
    assert ticks >= 10


async def test_cancelled_scan_leaves_no_placeholder_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    # About 3 MiB, with no time budget: the scan gives way after each of its bounded steps, and
    # is cancelled at the first of them after the canceller's first turn, long before its end.
    monkeypatch.setattr("trio_sandbox.redact._redactor._STEP_BUDGET", 0.0)
    lines = [f"filler line {i} with nothing in it" for i in range(90_000)]
    text = "\n".join([*lines, TOKEN])
    redactor = SecretRedactor()
    finished = False
    with trio.CancelScope() as scope:

        async def cancel_soon() -> None:
            await trio.lowlevel.checkpoint()
            scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_soon)
            await redactor.redact_text_async(text)
            finished = True
    assert scope.cancelled_caught
    assert not finished
    # Had the scan assigned the token a placeholder, it would carry the rule's name.
    placeholder = redactor.add_known_secret(TOKEN, "known")
    assert placeholder is not None
    assert placeholder.startswith("[REDACTED_SECRET:known:")


async def test_redact_json_async_matches_sync() -> None:
    redactor = SecretRedactor()
    value = {"content": [{"type": "text", "text": f"{TOKEN} and {OTHER_TOKEN}"}] * 3}
    assert await redactor.redact_json_async(value) == redactor.redact_json(value)


# Thousands of "curl" on one line make gitleaks' curl rules backtrack quadratically.
SLOW_TEXT = "curl " * 5000
SLOW_MESSAGE = r"redacting 250[0-9]{2} characters took more than 0\.0 s of scanning"


def test_text_that_is_slow_to_scan_is_refused() -> None:
    redactor = SecretRedactor(seconds_per_mib=0.01)
    with pytest.raises(RedactionTimeout, match=SLOW_MESSAGE):
        redactor.redact_text(SLOW_TEXT + TOKEN)
    # Nothing was assigned: the token has no placeholder yet.
    placeholder = redactor.add_known_secret(TOKEN, "known")
    assert placeholder is not None
    assert placeholder.startswith("[REDACTED_SECRET:known:")
    # With the default limit, the same rules scan ordinary curl commands at once.
    assert (
        SecretRedactor().redact_text("curl -sS https://example.com/\n" * 100).count("curl") == 100
    )


async def test_slow_text_is_refused_by_the_async_scan_too() -> None:
    with pytest.raises(RedactionTimeout, match=SLOW_MESSAGE):
        await SecretRedactor(seconds_per_mib=0.01).redact_text_async(SLOW_TEXT)


async def test_even_a_short_async_scan_gives_the_loop_a_turn() -> None:
    # A walk that awaits many small scans (a result of 20,000 small blobs) must not hold
    # the loop for all of them: each scan is a full checkpoint, however little it does.
    redactor = SecretRedactor()
    with trio.testing.assert_checkpoints():
        await redactor.redact_text_async("ok")
    with trio.testing.assert_checkpoints():
        await redactor.redact_json_async({"data": "aGVsbG8="})
