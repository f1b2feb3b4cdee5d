"""The exporter child's own OTLP encoding: byte for byte the message the SDK's encoder makes of the
same spans, and a span it cannot encode costs only itself."""

from __future__ import annotations

import os
import string
import sys
from typing import Any

import trio
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource

from tests.observe.otlp_receiver import open_otlp_receiver
from trio_sandbox.observe import _otel_child
from trio_sandbox.observe._otel_child import (
    FlatSpan,
    _byte_sender,
    encode_batch,
    frame,
    readable_spans,
)

RESOURCE = Resource({"service.name": "trio-sandbox", "service.version": "1.0"})
# Text protobuf can hold (no lone surrogates), and the occasional surrogate for the cases the
# encoders must survive.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
SCALARS = st.one_of(
    TEXT,
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
)
# Flat spans from our spans carry scalars and tuples of them; from an SDK span or the resource,
# bytes, None and mappings can come too. Both encoders must agree on all of them.
ATTRIBUTE_VALUES = st.recursive(
    st.one_of(SCALARS, st.binary(max_size=8), st.none()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(tuple), st.dictionaries(TEXT, inner, max_size=2)
    ),
    max_leaves=6,
) | st.one_of(
    st.integers(2**63, 2**70),  # past int64: left out, by both encoders
    st.just("\ud800"),  # a lone surrogate: left out, by both encoders
    st.sampled_from(["tools/call", "ok", "up"]),  # values that repeat: remembered encodings
)
ATTRIBUTES = st.dictionaries(st.one_of(TEXT, st.just("\udfff")), ATTRIBUTE_VALUES, max_size=5)


@st.composite
def flat_spans(draw: st.DrawFn, names: st.SearchStrategy[str] = TEXT) -> FlatSpan:
    code = draw(st.integers(0, 2))
    start = draw(st.integers(0, 2**63))
    return (
        draw(names),
        draw(st.integers(1, 2**128 - 1)),
        draw(st.integers(1, 2**64 - 1)),
        draw(st.integers(0, 255)),
        draw(st.none() | st.integers(0, 2**64 - 1)),
        draw(st.booleans()),
        draw(st.integers(0, 4)),
        start,
        draw(st.integers(start, 2**64 - 1)),
        draw(ATTRIBUTES),
        code,
        draw(st.none() | TEXT) if code == 2 else None,  # a description is an error's only
        draw(st.sampled_from(["trio_sandbox", "other", ""])),
        draw(st.sampled_from([None, "1.0", "2"])),
    )


def the_sdks(batch: list[FlatSpan]) -> ExportTraceServiceRequest:
    return encode_spans(readable_spans(batch, RESOURCE, {}))


def ours(batch: list[FlatSpan]) -> tuple[ExportTraceServiceRequest, int]:
    body, left_out = encode_batch(batch, RESOURCE)
    assert body is not None
    return ExportTraceServiceRequest.FromString(body), left_out


@given(st.lists(flat_spans(), min_size=1, max_size=6))
def test_a_batch_encodes_as_the_sdks_encoder_encodes_it(batch: list[FlatSpan]) -> None:
    request, left_out = ours(batch)
    assert left_out == 0
    assert request == the_sdks(batch)
    assert request.SerializeToString(deterministic=True) == the_sdks(batch).SerializeToString(
        deterministic=True
    )


@given(
    st.lists(flat_spans(), min_size=1, max_size=4),
    flat_spans(names=st.just("tools/call \ud800")),
)
def test_a_span_protobuf_cannot_hold_costs_only_itself(
    batch: list[FlatSpan], unencodable: FlatSpan
) -> None:
    request, left_out = ours([unencodable, *batch])
    assert left_out == 1
    assert request == the_sdks(batch)


def test_remembered_key_values_stay_bounded_and_right() -> None:
    # A value made per call (a stateless session's digest) must not grow the memory of encoded
    # key-values without end, a long value must not be kept at all, and a remembered encoding
    # must come back for its own value only.
    def span(index: int, value: str) -> FlatSpan:
        attributes = {"session": value, "outcome": ("ok", "tool_error")[index % 2]}
        return ("call", 1, index + 1, 1, None, False, 1, 0, 1, attributes, 0, None, "s", None)

    spans = [span(i, f"{i % 5000:016x}") for i in range(_otel_child.MAX_CACHED_KEY_VALUES * 2)]
    for start in range(0, len(spans), 512):
        batch = spans[start : start + 512]
        assert ours(batch)[0] == the_sdks(batch)
        assert len(_otel_child._TEXT_KEY_VALUES) <= _otel_child.MAX_CACHED_KEY_VALUES
    long_value = "v" * _otel_child.MAX_CACHED_CHARS
    assert ours([span(0, long_value)])[0] == the_sdks([span(0, long_value)])
    assert all(value != long_value for _, value in _otel_child._TEXT_KEY_VALUES)


async def test_a_batch_that_cannot_be_sent_costs_only_itself() -> None:
    """The child itself, a real process sending to a real OTLP receiver: a batch whose scope
    protobuf cannot hold fails alone, and the child lives on to send the next."""
    good = flat_spans_example("the good one")
    bad = (*flat_spans_example("in a bad scope")[:-2], "\ud800", None)
    async with open_otlp_receiver() as receiver:
        frames = b"".join(frame(value) for value in ({"service.name": "t"}, [bad], [good]))
        done = await trio.run_process(
            [sys.executable, "-m", "trio_sandbox.observe._otel_child"],
            stdin=frames,
            capture_stderr=True,
            env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url},
        )
        # The child exits once its exporter has sent all (each export waits for its answer).
        assert [span.name for span in receiver.spans] == ["the good one"]
    assert b"a batch of 1 spans could not be sent" in done.stderr


def flat_spans_example(name: str) -> FlatSpan:
    return (name, 7, 8, 1, None, False, 1, 10, 20, {"k": "v"}, 0, None, "trio_sandbox", None)


def test_a_batch_of_nothing_encodable_is_not_sent() -> None:
    unencodable: Any = ("\ud800", 1, 2, 1, None, False, 0, 0, 1, {}, 0, None, "s", None)
    assert encode_batch([unencodable], RESOURCE) == (None, 1)


def test_the_installed_exporter_takes_encoded_bodies() -> None:
    # The fast path's entry is the exporter's own; a release without it falls back to handing
    # the exporter SDK spans, which a change of this figure would show.
    assert _byte_sender(OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")) is not None


def test_the_encoding_names_every_field_the_flat_span_carries() -> None:
    span: FlatSpan = (
        "tools/call up__noop",
        int("4bf92f3577b34da6a3ce929d0e0e4736", 16),
        int("00f067aa0ba902b7", 16),
        1,
        int("0123456789abcdef", 16),
        True,
        1,
        1_000,
        2_000,
        {"gen_ai.tool.name": "up__noop", "trio_sandbox.count": 3, "list": ("a", "b")},
        2,
        "it failed",
        "trio_sandbox",
        "1.0",
    )
    [resource_spans] = ours([span])[0].resource_spans
    [scope_spans] = resource_spans.scope_spans
    [encoded] = scope_spans.spans
    assert encoded.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert encoded.span_id.hex() == "00f067aa0ba902b7"
    assert encoded.parent_span_id.hex() == "0123456789abcdef"
    assert encoded.flags == 0x300  # the parent's remoteness is known, and it is remote
    assert encoded.kind == encoded.SPAN_KIND_SERVER
    assert (encoded.start_time_unix_nano, encoded.end_time_unix_nano) == (1_000, 2_000)
    assert (encoded.status.code, encoded.status.message) == (2, "it failed")
    assert {kv.key for kv in encoded.attributes} == {
        "gen_ai.tool.name",
        "trio_sandbox.count",
        "list",
    }
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("trio_sandbox", "1.0")
    assert {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes} == {
        "service.name": "trio-sandbox",
        "service.version": "1.0",
    }
    assert set(string.hexdigits) >= set(encoded.trace_id.hex())
