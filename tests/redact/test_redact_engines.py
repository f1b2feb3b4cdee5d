"""The two literal-search engines (Hyperscan, and the pure-Python fallback) give the same
occurrences, and so the same redaction, on any text: ASCII or not, with characters whose
``lower()`` differs in length or lands in ASCII (the Kelvin sign, dotted I, long s)."""

from __future__ import annotations

import platform
import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.redact.redact_fakes import (
    filler_text,
    gcp_service_account_json,
    pem_private_key,
    self_evident_secret,
)
from trio_sandbox.redact import PLACEHOLDER, SecretRedactor, default_rules, load_rules
from trio_sandbox.redact._detect import Detector
from trio_sandbox.redact._prefilter import HyperscanSearch, PythonSearch, literal_search
from trio_sandbox.redact._redactor import _run

no_deadline = settings(deadline=None)
# Characters that trip a byte or case mapping: lower() to ASCII or to two characters, astral,
# a lone surrogate, the "?" that Hyperscan's text has for every non-ASCII character.
TRICKY = ["\u212a", "\u0130", "\u017f", "\u0131", "ß", "é", "━", "😀", "\ud800", "?", "\x00"]
KEYWORDS = sorted(default_rules().keywords)


@st.composite
def literal_like(draw: st.DrawFn) -> str:
    """A rule's keyword in random case, maybe with a letter swapped for a look-alike."""
    word = draw(st.sampled_from(KEYWORDS))
    chars = [c.upper() if draw(st.booleans()) else c for c in word]
    if draw(st.booleans()):
        chars[draw(st.integers(0, len(chars) - 1))] = draw(st.sampled_from(TRICKY))
    return "".join(chars)


@st.composite
def mixed_text(draw: st.DrawFn) -> str:
    rng = random.Random(draw(st.integers(0, 2**32)))
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 6))
        if kind == 0:
            parts.append(draw(filler_text))
        elif kind == 1:
            parts.append(draw(st.text(max_size=40)))
        elif kind == 2:
            parts.append(draw(st.text(alphabet=st.sampled_from(TRICKY), max_size=6)))
        elif kind == 3:
            parts.append(draw(literal_like()))
        elif kind == 4:
            parts.append(draw(literal_like()) + draw(st.sampled_from(["=", ": ", " = '"])))
            parts.append(
                "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(24))
            )
        elif kind == 5:
            parts.append(draw(self_evident_secret()))
        else:
            parts.append(
                pem_private_key(rng) if draw(st.booleans()) else gcp_service_account_json(rng)[0]
            )
        parts.append(draw(st.sampled_from(["", " ", "\n", '"'])))
    return "".join(parts)


def engines() -> tuple[Detector, Detector]:
    rules = default_rules()
    return Detector.build(rules), Detector.build(rules, pure_python=True)


HYPERSCAN, PYTHON = engines()


def test_the_default_rules_run_on_hyperscan_where_it_has_a_wheel() -> None:
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip("Hyperscan has no wheel here: the pure-Python search runs")
    assert isinstance(HYPERSCAN.literals, HyperscanSearch)
    assert isinstance(PYTHON.literals, PythonSearch)
    assert HYPERSCAN.literals.strings == PYTHON.literals.strings


@no_deadline
@given(mixed_text())
def test_both_engines_find_the_same_occurrences(text: str) -> None:
    assert _run(HYPERSCAN.literal_starts(text)) == _run(PYTHON.literal_starts(text))


def _redacted_by(detector: Detector, text: str) -> tuple[str, dict[str, str]]:
    """The redacted text with each placeholder's random id replaced by its value, and the map
    of values to rules."""
    redactor = SecretRedactor()
    redactor._detector = detector
    redacted = redactor.redact_text(text)
    values = redactor._values
    named = PLACEHOLDER.sub(lambda m: f"<{m.group(1)}|{values[m.group(0)]}>", redacted)
    return named, {value: PLACEHOLDER.fullmatch(p)[1] for p, value in values.items()}  # type: ignore[index]


@no_deadline
@given(mixed_text())
def test_both_engines_redact_the_same(text: str) -> None:
    assert _redacted_by(HYPERSCAN, text) == _redacted_by(PYTHON, text)


def test_occurrences_across_hyperscan_windows() -> None:
    # "api" across a window's edge, ending at one, starting at one, and at the text's end.
    window = 128 * 1024
    places = [window - 2, 2 * window - 3, 3 * window, 4 * window - 1, 600 * 1024 - 3]
    text = list("━x" * (300 * 1024))
    for at in places:
        text[at : at + 3] = "ApI"
    joined = "".join(text)
    found = _run(HYPERSCAN.literal_starts(joined))
    assert found == _run(PYTHON.literal_starts(joined))
    assert found[HYPERSCAN.literals.strings.index("api")] == places


def test_literals_hyperscan_cannot_take_exactly_fall_back_to_python() -> None:
    # "?" stands for every non-ASCII character in Hyperscan's text; a non-ASCII literal is not
    # in it at all.
    for strings, expected in (
        (["key", "wh?t"], {0: [0], 1: [4]}),
        (["key", "clé"], {0: [0], 1: [14]}),
    ):
        search = literal_search(strings)
        assert isinstance(search, PythonSearch)
        assert _run(search.occurrences("KEY wh?t WHéT clé")) == expected
    rules = load_rules(
        """
[[rules]]
id = "odd"
regex = '''clé=([a-z]{8})'''
keywords = ["clé"]
"""
    )
    redacted = SecretRedactor(rules).redact_text("la clé=abcdefgh")
    assert "abcdefgh" not in redacted


def test_a_hyperscan_that_cannot_run_here_falls_back_to_python(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    hyperscan = pytest.importorskip("hyperscan")

    class Database:
        def compile(self, **kwargs: object) -> None:
            raise hyperscan.error("error code -12")  # HS_ARCH_ERROR: a CPU it was not built for

    monkeypatch.setattr(hyperscan, "Database", Database)
    search = literal_search(["token", "secret"])
    assert isinstance(search, PythonSearch)
    assert "Hyperscan cannot run here" in caplog.text
    assert _run(search.occurrences("a TOKEN and a secret")) == {0: [2], 1: [14]}
