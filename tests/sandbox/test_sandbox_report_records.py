"""The host's reading of the warden's ``connection`` lines: a record the warden wrote comes back
whole, labelled with its sandbox and generation; anything else (garbage, wrong types, values out
of bounds, texts too long) is dropped without an error, and no line makes an invalid record."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_sandbox.egress import (
    MAX_REASON_CHARS,
    MAX_TARGET_CHARS,
    ConnectionRecord,
    Verdict,
)
from trio_sandbox.egress._connections import PROTOCOLS
from trio_sandbox.observe import EgressRecord, EgressVerdict
from trio_sandbox.sandbox._report import WardenReport

VALID: dict[str, Any] = {
    "verdict": "allowed",
    "protocol": "connect",
    "target": "pypi.org:443",
    "at": 1_700_000_000.25,
    "rule": "pypi.org",
    "reason": None,
    "bytes_up": 517,
    "bytes_down": 90_210,
    "duration": 1.5,
    "count": 1,
}


def valid(record: EgressRecord) -> bool:
    def text(value: object, limit: int) -> bool:
        return isinstance(value, str) and 0 < len(value) <= limit

    def counter(value: object) -> bool:
        return type(value) is int and 0 <= value < 2**63

    return (
        isinstance(record.verdict, EgressVerdict)
        and record.protocol in PROTOCOLS
        and text(record.target, MAX_TARGET_CHARS)
        and (record.rule is None or text(record.rule, MAX_TARGET_CHARS))
        and (record.reason is None or text(record.reason, MAX_REASON_CHARS))
        and counter(record.bytes_up)
        and counter(record.bytes_down)
        and counter(record.count)
        and record.count >= 1
        and type(record.at) is float
        and math.isfinite(record.at)
        and record.at >= 0
        and type(record.duration) is float
        and math.isfinite(record.duration)
        and record.duration >= 0
        and record.sandbox == "s"
        and record.generation == 3
    )


def reading() -> tuple[WardenReport, list[EgressRecord]]:
    records: list[EgressRecord] = []
    return WardenReport(records.append, sandbox="s", generation=3), records


def test_a_warden_record_comes_back_whole_and_labelled() -> None:
    report, records = reading()
    sent = ConnectionRecord(
        verdict=Verdict.REFUSED,
        protocol="socks5",
        target="evil.example:443",
        at=1_700_000_000.5,
        reason="not in allow_domains",
        duration=0.001,
        count=7,
    )
    report.read_line(json.dumps({"connection": sent.to_report()}))
    (record,) = records
    assert record == EgressRecord(
        verdict=EgressVerdict.REFUSED,
        at=sent.at,
        protocol="socks5",
        target="evil.example:443",
        sandbox="s",
        generation=3,
        reason="not in allow_domains",
        duration=0.001,
        count=7,
    )
    # Relabelled as the generation is moved and numbered: the next records say so.
    report.sandbox, report.generation = "other", 4
    report.read_line(json.dumps({"connection": VALID}))
    assert (records[-1].sandbox, records[-1].generation) == ("other", 4)
    # Without a callback, nothing is parsed or kept.
    quiet = WardenReport()
    quiet.read_line(json.dumps({"connection": VALID}))


def test_values_of_the_wrong_type_or_out_of_bounds_are_dropped() -> None:
    report, records = reading()
    for key, bad in [
        ("verdict", "maybe"),
        ("verdict", ["allowed"]),
        ("protocol", "ftp"),
        ("target", ""),
        ("target", "t" * (MAX_TARGET_CHARS + 1)),
        ("target", None),
        ("rule", 5),
        ("reason", "r" * (MAX_REASON_CHARS + 1)),
        ("at", float("nan")),
        ("at", -1),
        ("at", True),
        ("at", "1700000000"),
        ("duration", float("inf")),
        ("bytes_up", -1),
        ("bytes_up", 1.0),
        ("bytes_down", True),
        ("bytes_down", 2**64),
        ("count", 0),
        ("count", None),
    ]:
        report.read_line(json.dumps({"connection": {**VALID, key: bad}}))
        assert records == [], (key, bad)
    for line in (
        json.dumps({"connection": VALID, "extra": 1}),
        json.dumps({"connection": [VALID]}),
        json.dumps([{"connection": VALID}]),
        '{"connection": {"count": 1' + "0" * 5000 + "}}",
        "[" * 60_000,
        "",
        "\x00",
    ):
        report.read_line(line)
    assert records == []
    # Keys it does not know are ignored; absent optional ones take their defaults.
    report.read_line(json.dumps({"connection": {**VALID, "new_field": {"x": 1}}}))
    minimal = {key: VALID[key] for key in ("verdict", "protocol", "target", "at")}
    report.read_line(json.dumps({"connection": minimal}))
    assert [(r.bytes_up, r.count) for r in records] == [(517, 1), (0, 1)]


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
FIELD_VALUES = JSON | st.sampled_from(["allowed", "refused", "failed", "http", "connect", "socks5"])


@st.composite
def connection_values(draw: st.DrawFn) -> object:
    """A valid record with some fields replaced, removed or added."""
    value = dict(VALID)
    for key in draw(st.lists(st.sampled_from(sorted(VALID)), max_size=4)):
        if draw(st.booleans()):
            value[key] = draw(FIELD_VALUES)
        else:
            value.pop(key, None)
    value.update(draw(st.dictionaries(st.text(max_size=10), JSON, max_size=2)))
    return value


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda data: data.decode("latin-1")),
        JSON.map(json.dumps),
        st.dictionaries(st.sampled_from(["connection", "egress", "limits", "warning"]), JSON).map(
            json.dumps
        ),
        connection_values().map(lambda value: json.dumps({"connection": value})),
    )
)
def test_no_line_raises_or_makes_an_invalid_record(line: str) -> None:
    report, records = reading()
    report.read_line(line)
    for record in records:
        assert valid(record), record
        json.dumps(record.to_json(), allow_nan=False)
