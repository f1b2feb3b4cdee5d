"""OpenTelemetry traces: the spans of calls and of a sandbox's life (the SDK's in-memory exporter),
the W3C trace context in and out, no secret in any span, the CLI's provider from the ``OTEL_*``
variables end to end against a real OTLP/HTTP receiver, and what importing costs without them."""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
import trio
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tests.observe.otlp_receiver import ReceivedSpan, decode_spans, open_otlp_receiver
from trio_sandbox.observe import (
    CallKind,
    Failure,
    LifecyclePhase,
    LifecycleRecord,
    ObserveError,
    Observer,
    OtelTracing,
    Outcome,
    Tracing,
    configure_otel_from_environment,
    session_digest,
)
from trio_sandbox.observe._otel_child import FlatSpan, readable_spans
from trio_sandbox.observe._otel_export import (
    MAX_BATCH,
    MAX_DELAY,
    ChildExportProcessor,
    child_export_processor,
)
from trio_sandbox.observe._otel_spans import ChildExportTracerProvider
from trio_sandbox.observe._tracing import MAX_NAME_CHARS
from trio_sandbox.program import VERSION
from trio_sandbox.redact import SecretRedactor

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
CLIENT_PARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
CLIENT_KEY = "certificate:" + "ab" * 32


class Recorded:
    """An :class:`OtelTracing` on a provider whose spans land in memory: the SDK's own
    (``sdk``), or the CLI's, whose spans are flat tuples for the exporter child (``child``),
    made into the SDK's spans as the child makes them."""

    def __init__(self, provider: str = "sdk") -> None:
        self.exporter = InMemorySpanExporter()
        processor = SimpleSpanProcessor(self.exporter)
        if provider == "sdk":
            self.provider = TracerProvider(shutdown_on_exit=False)
            self.provider.add_span_processor(processor)
        else:
            resource = Resource.create()
            scopes: dict[Any, Any] = {}

            def take(span: FlatSpan) -> None:
                self.exporter.export(readable_spans([span], resource, scopes))

            self.provider = ChildExportTracerProvider(processor, take, resource=resource)
        self.tracing = OtelTracing(self.provider)
        # mypy checks here that OtelTracing is the Observer's Tracing (and its spans CallSpans).
        self.protocol: Tracing = self.tracing

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> ReadableSpan:
        [span] = [span for span in self.spans if span.name == name]
        return span


@pytest.fixture(params=["sdk", "child"])
def recorded(request: pytest.FixtureRequest) -> Iterator[Recorded]:
    recorded = Recorded(request.param)
    yield recorded
    recorded.provider.shutdown()


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


def parent_id(span: ReadableSpan) -> str | None:
    return trace.format_span_id(span.parent.span_id) if span.parent is not None else None


def lifecycle(
    phase: LifecyclePhase,
    at: float,
    sandbox: str = "main",
    generation: int | None = 1,
    **fields: Any,
) -> LifecycleRecord:
    return LifecycleRecord(phase=phase, at=at, sandbox=sandbox, generation=generation, **fields)


# --- call spans ---------------------------------------------------------------------------------


def test_a_tool_call_is_a_server_span_named_and_attributed_as_the_mcp_conventions_say(
    recorded: Recorded,
) -> None:
    span = recorded.tracing.start_call(
        CallKind.TOOL_CALL,
        "run_command",
        upstream="sandbox",
        client=CLIENT_KEY,
        parent=None,
        session="0123456789abcdef",
    )
    span.end(Outcome.OK, None)
    [done] = recorded.spans
    assert done.name == "tools/call run_command"
    assert done.kind is SpanKind.SERVER
    assert done.parent is None
    assert dict(done.attributes or {}) == {
        "mcp.method.name": "tools/call",
        "gen_ai.tool.name": "run_command",
        "gen_ai.operation.name": "execute_tool",
        "trio_sandbox.upstream": "sandbox",
        "trio_sandbox.client": CLIENT_KEY,
        "trio_sandbox.session": "0123456789abcdef",
        "trio_sandbox.outcome": "ok",
    }
    assert done.status.status_code is StatusCode.UNSET
    assert done.instrumentation_scope is not None
    assert (done.instrumentation_scope.name, done.instrumentation_scope.version) == (
        "trio_sandbox",
        VERSION,
    )
    assert span.trace_id == hex_ids(done)[0]


def test_a_resource_read_keeps_its_uri_out_of_the_span_name(recorded: Recorded) -> None:
    uri = "file:///workspace/report-2291.txt"
    span = recorded.tracing.start_call(
        CallKind.RESOURCE_READ, uri, upstream=None, client=None, parent=None
    )
    span.end(Outcome.OK, None)
    [done] = recorded.spans
    assert done.name == "resources/read"
    assert dict(done.attributes or {}) == {
        "mcp.method.name": "resources/read",
        "mcp.resource.uri": uri,
        "trio_sandbox.outcome": "ok",
    }


@pytest.mark.parametrize("kind", [CallKind.TOOL_CALL, CallKind.RESOURCE_READ])
def test_a_megabyte_name_is_cut_in_the_span(recorded: Recorded, kind: CallKind) -> None:
    """A client names its tool (or URI) as it likes, up to a message's size: a span keeps the
    start of it, so that a few such calls cannot crowd the other calls' spans out."""
    name = "x" * 4_000_000
    recorded.tracing.start_call(kind, name, upstream=None, client=None, parent=None).end(
        Outcome.FAILED, None
    )
    [done] = recorded.spans
    kept = [value for value in (done.attributes or {}).values() if isinstance(value, str)]
    assert max(len(done.name), *map(len, kept)) <= MAX_NAME_CHARS + len("resources/read ")
    cut = "x" * (MAX_NAME_CHARS - 1) + "\u2026"
    assert cut in kept
    assert done.name in (f"tools/call {cut}", "resources/read")


def test_a_clients_traceparent_makes_the_call_its_child(recorded: Recorded) -> None:
    span = recorded.tracing.start_call(
        CallKind.TOOL_CALL, "echo", upstream="a", client=None, parent=CLIENT_PARENT
    )
    span.end(Outcome.OK, None)
    [done] = recorded.spans
    trace_id, span_id = hex_ids(done)
    assert trace_id == CLIENT_TRACE == span.trace_id
    assert parent_id(done) == CLIENT_SPAN
    assert done.parent is not None
    assert done.parent.is_remote
    assert span_id != CLIENT_SPAN


def test_the_traceparent_for_the_upstream_names_the_call_span_as_parent(
    recorded: Recorded,
) -> None:
    """What the upstream gets in ``_meta`` parses (with the W3C propagator, as a traced MCP
    server would) to a parent whose span is ours: its spans join our trace under the call."""
    span = recorded.tracing.start_call(
        CallKind.TOOL_CALL, "echo", upstream="a", client=None, parent=CLIENT_PARENT
    )
    header = span.traceparent()
    assert header is not None
    assert TRACEPARENT.fullmatch(header), header
    upstream_context = TraceContextTextMapPropagator().extract({"traceparent": header})
    upstream_tracer = recorded.provider.get_tracer("an-upstream-mcp-server")
    upstream_tracer.start_span(
        "tools/call echo", context=upstream_context, kind=SpanKind.SERVER
    ).end()
    span.end(Outcome.OK, None)
    upstream_span, call_span = recorded.spans
    assert hex_ids(upstream_span)[0] == hex_ids(call_span)[0] == CLIENT_TRACE
    assert parent_id(upstream_span) == hex_ids(call_span)[1]
    assert header == f"00-{CLIENT_TRACE}-{hex_ids(call_span)[1]}-01"


def test_a_client_that_samples_out_is_followed_and_the_upstream_told_so(
    recorded: Recorded,
) -> None:
    """The SDK's default sampler follows the parent: a client's flags 00 record nothing here,
    and the upstream gets the trace, a span id of ours and flags 00."""
    span = recorded.tracing.start_call(
        CallKind.TOOL_CALL,
        "echo",
        upstream=None,
        client=None,
        parent=f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00",
    )
    with span.child("upstream"):
        pass
    span.end(Outcome.OK, None)
    assert recorded.spans == []
    header = span.traceparent()
    assert header is not None
    match = TRACEPARENT.fullmatch(header)
    assert match is not None
    assert match[1] == CLIENT_TRACE == span.trace_id
    assert match[2] != CLIENT_SPAN
    assert header.endswith("-00")


@pytest.mark.parametrize(
    "parent",
    [
        "",
        "garbage",
        f"00-{CLIENT_TRACE}-{CLIENT_SPAN}",  # no flags
        f"00-{'0' * 32}-{CLIENT_SPAN}-01",  # the invalid all-zero trace id
        f"00-{CLIENT_TRACE}-{'0' * 16}-01",  # the invalid all-zero span id
        f"ff-{CLIENT_TRACE}-{CLIENT_SPAN}-01",  # version ff is forbidden
        f"00-{CLIENT_TRACE.upper()}-{CLIENT_SPAN}-01",  # upper-case hex is not W3C
        f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{CLIENT_TRACE}0-{CLIENT_SPAN}-01",
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(recorded: Recorded, parent: str) -> None:
    span = recorded.tracing.start_call(
        CallKind.TOOL_CALL, "echo", upstream=None, client=None, parent=parent
    )
    span.end(Outcome.OK, None)
    [done] = recorded.spans
    assert done.parent is None
    assert span.trace_id is not None
    assert span.trace_id not in (CLIENT_TRACE, "0" * 32)
    header = span.traceparent()
    assert header is not None
    assert TRACEPARENT.fullmatch(header)


def test_a_span_current_in_the_calling_task_is_not_taken_as_the_parent(
    recorded: Recorded,
) -> None:
    """An embedder who calls inside their own span does not get every call of the proxy nested
    in it: a call's parent is the client's traceparent or nothing."""
    embedder = recorded.provider.get_tracer("embedder")
    with embedder.start_as_current_span("the embedder's request") as current:
        span = recorded.tracing.start_call(
            CallKind.TOOL_CALL, "echo", upstream=None, client=None, parent=None
        )
        with span.child("upstream"):
            # Nor does a span of ours become current for what the embedder does meanwhile.
            assert trace.get_current_span() is current
        span.end(Outcome.OK, None)
        assert trace.get_current_span() is current
    call = recorded.named("tools/call echo")
    assert call.parent is None
    assert parent_id(recorded.named("upstream")) == hex_ids(call)[1]


async def test_children_made_in_other_tasks_are_children_of_the_call(recorded: Recorded) -> None:
    span = recorded.tracing.start_call(
        CallKind.TOOL_CALL, "echo", upstream=None, client=None, parent=CLIENT_PARENT
    )

    async def hop(name: str) -> None:
        with span.child(name):
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hop, "redact")
        nursery.start_soon(hop, "upstream")
    span.end(Outcome.OK, None)
    call = recorded.named("tools/call echo")
    for name, kind in (("redact", SpanKind.INTERNAL), ("upstream", SpanKind.CLIENT)):
        child = recorded.named(name)
        assert child.kind is kind
        assert parent_id(child) == hex_ids(call)[1]
        assert hex_ids(child)[0] == CLIENT_TRACE


def test_a_failed_call_has_the_error_status_and_its_failure_type(recorded: Recorded) -> None:
    span = recorded.tracing.start_call(
        CallKind.TOOL_CALL, "echo", upstream="a", client=None, parent=None
    )
    span.end(Outcome.FAILED, Failure("SandboxRestarted", "the sandbox restarted", -32000))
    span.end(Outcome.OK, None)  # a second end changes nothing and makes no second span
    [done] = recorded.spans
    assert done.status.status_code is StatusCode.ERROR
    assert done.status.description == "the sandbox restarted"
    attributes = dict(done.attributes or {})
    assert attributes["error.type"] == "SandboxRestarted"
    assert attributes["rpc.response.status_code"] == "-32000"
    assert attributes["trio_sandbox.outcome"] == "failed"


def test_a_tool_error_is_an_error_of_type_tool_error(recorded: Recorded) -> None:
    span = recorded.tracing.start_call(
        CallKind.TOOL_CALL, "echo", upstream="a", client=None, parent=None
    )
    span.end(Outcome.TOOL_ERROR, None)
    [done] = recorded.spans
    assert done.status.status_code is StatusCode.ERROR
    attributes = dict(done.attributes or {})
    assert attributes["error.type"] == "tool_error"
    assert attributes["trio_sandbox.outcome"] == "tool_error"
    assert "rpc.response.status_code" not in attributes


def test_a_child_that_raises_is_failed_by_the_exceptions_type_only(recorded: Recorded) -> None:
    """The exception's message is not recorded (no exception event, no description): it may
    hold what the redactor never saw."""
    span = recorded.tracing.start_call(
        CallKind.TOOL_CALL, "echo", upstream="a", client=None, parent=None
    )
    with pytest.raises(ConnectionResetError), span.child("upstream"):
        raise ConnectionResetError("peer reset; password=hunter2-hunter2")
    span.end(Outcome.FAILED, Failure("ConnectionResetError", "upstream lost"))
    child = recorded.named("upstream")
    assert child.status.status_code is StatusCode.ERROR
    assert child.status.description is None
    assert dict(child.attributes or {}) == {"error.type": "ConnectionResetError"}
    assert child.events == ()
    assert "hunter2" not in json.dumps([s.to_json() for s in recorded.spans])


def test_without_a_provider_the_global_one_gets_the_spans_even_when_set_later() -> None:
    """Library instrumentation: OtelTracing() made before the embedder sets its provider still
    reports to it (a process of its own: the global provider can be set once)."""
    probe = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from trio_sandbox.observe import CallKind, OtelTracing, Outcome

tracing = OtelTracing()
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
tracing.start_call(CallKind.TOOL_CALL, "echo", upstream=None, client=None, parent=None).end(
    Outcome.OK, None
)
print([span.name for span in exporter.get_finished_spans()])
"""
    done = run_python(probe)
    assert done.stdout.strip() == "['tools/call echo']", done.stderr


def test_with_no_provider_anywhere_there_is_no_trace_and_no_traceparent() -> None:
    """The API alone (no SDK provider set): spans are no-ops; the call still passes on the
    client's traceparent, and makes up none of its own."""
    probe = f"""
from trio_sandbox.observe import CallKind, OtelTracing
tracing = OtelTracing()
alone = tracing.start_call(CallKind.TOOL_CALL, "echo", upstream=None, client=None, parent=None)
joined = tracing.start_call(
    CallKind.TOOL_CALL, "echo", upstream=None, client=None, parent={CLIENT_PARENT!r}
)
print(alone.trace_id, alone.traceparent(), joined.trace_id, joined.traceparent())
"""
    done = run_python(probe)
    assert done.stdout.split() == ["None", "None", CLIENT_TRACE, CLIENT_PARENT], done.stderr


# --- a sandbox's life ---------------------------------------------------------------------------


def test_a_start_span_runs_from_start_to_ready(recorded: Recorded) -> None:
    tracing = recorded.tracing
    tracing.lifecycle(lifecycle(LifecyclePhase.START, 1000.0))
    tracing.lifecycle(lifecycle(LifecyclePhase.START, 1000.5, sandbox="upstream-b", generation=7))
    assert recorded.spans == []
    tracing.lifecycle(lifecycle(LifecyclePhase.READY, 1001.25))
    [start] = recorded.spans
    assert start.name == "sandbox start"
    assert start.parent is None
    assert (start.start_time, start.end_time) == (1_000_000_000_000, 1_001_250_000_000)
    assert start.status.status_code is StatusCode.UNSET
    assert dict(start.attributes or {}) == {
        "trio_sandbox.sandbox": "main",
        "trio_sandbox.generation": 1,
    }
    tracing.lifecycle(lifecycle(LifecyclePhase.READY, 1002.0, sandbox="upstream-b", generation=7))
    assert [span.name for span in recorded.spans] == ["sandbox start"] * 2
    # A ready with no start open (a record the tracing did not see begin) makes nothing.
    tracing.lifecycle(lifecycle(LifecyclePhase.READY, 1003.0, generation=2))
    assert len(recorded.spans) == 2


def test_a_respawn_is_an_instant_with_its_reason_and_fails_a_start_not_yet_ready(
    recorded: Recorded,
) -> None:
    tracing = recorded.tracing
    tracing.lifecycle(lifecycle(LifecyclePhase.START, 10.0, generation=3))
    tracing.lifecycle(
        lifecycle(LifecyclePhase.RESPAWN, 12.0, generation=3, reason="the warden exited (137)")
    )
    start, respawn = recorded.spans
    assert start.name == "sandbox start"
    assert start.status.status_code is StatusCode.ERROR
    assert start.status.description == "the warden exited (137)"
    assert dict(start.attributes or {})["error.type"] == "respawn"
    assert start.end_time == 12_000_000_000
    assert respawn.name == "sandbox respawn"
    assert respawn.start_time == respawn.end_time == 12_000_000_000
    assert dict(respawn.attributes or {}) == {
        "trio_sandbox.sandbox": "main",
        "trio_sandbox.generation": 3,
        "trio_sandbox.reason": "the warden exited (137)",
    }
    # A respawn is not itself an error: the sandbox is on its way back.
    assert respawn.status.status_code is StatusCode.UNSET


def test_stop_and_failed_end_every_start_of_their_sandbox_and_only_theirs(
    recorded: Recorded,
) -> None:
    tracing = recorded.tracing
    tracing.lifecycle(lifecycle(LifecyclePhase.START, 1.0, generation=1))
    tracing.lifecycle(lifecycle(LifecyclePhase.START, 1.0, generation=2))
    tracing.lifecycle(lifecycle(LifecyclePhase.START, 1.0, sandbox="other", generation=1))
    tracing.lifecycle(lifecycle(LifecyclePhase.STOP, 5.0, generation=None))
    names = [span.name for span in recorded.spans]
    assert names == ["sandbox start", "sandbox start", "sandbox stop"]
    for start in recorded.spans[:2]:
        assert dict(start.attributes or {})["error.type"] == "stop"
        assert dict(start.attributes or {})["trio_sandbox.sandbox"] == "main"
    tracing.lifecycle(
        lifecycle(LifecyclePhase.FAILED, 6.0, sandbox="other", generation=None, reason="gave up")
    )
    other_start, failed = recorded.spans[3:]
    assert dict(other_start.attributes or {})["error.type"] == "failed"
    assert failed.name == "sandbox failed"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "gave up"


def test_a_limit_hit_is_an_instant_with_the_limit_and_the_count(recorded: Recorded) -> None:
    recorded.tracing.lifecycle(lifecycle(LifecyclePhase.LIMIT_HIT, 3.0, limit="memory", count=2))
    [hit] = recorded.spans
    assert hit.name == "sandbox limit_hit"
    assert dict(hit.attributes or {}) == {
        "trio_sandbox.sandbox": "main",
        "trio_sandbox.generation": 1,
        "trio_sandbox.limit": "memory",
        "trio_sandbox.count": 2,
    }


def test_starts_never_ready_are_bounded(recorded: Recorded) -> None:
    from trio_sandbox.observe._tracing import MAX_OPEN_STARTS

    tracing = recorded.tracing
    for generation in range(MAX_OPEN_STARTS + 10):
        tracing.lifecycle(lifecycle(LifecyclePhase.START, 1.0, generation=generation))
    abandoned = recorded.spans
    assert len(abandoned) == 10
    assert [dict(s.attributes or {})["trio_sandbox.generation"] for s in abandoned] == list(
        range(10)
    )
    assert all(dict(s.attributes or {})["error.type"] == "abandoned" for s in abandoned)
    # The same start twice: the first is abandoned, the second is the one a ready ends.
    tracing.lifecycle(lifecycle(LifecyclePhase.START, 2.0, generation=MAX_OPEN_STARTS + 9))
    tracing.lifecycle(lifecycle(LifecyclePhase.READY, 3.0, generation=MAX_OPEN_STARTS + 9))
    *_, again, ready = recorded.spans
    assert dict(again.attributes or {})["error.type"] == "abandoned"
    assert ready.start_time == 2_000_000_000
    assert ready.status.status_code is StatusCode.UNSET


# --- no secret in any span ----------------------------------------------------------------------


def span_texts(spans: list[ReadableSpan]) -> str:
    return json.dumps([json.loads(span.to_json()) for span in spans])


async def test_no_secret_reaches_a_span_through_the_observer(recorded: Recorded) -> None:
    """Everything the proxy could hand the observer with a secret in it: a tool's name, its
    arguments, a failure's message, a respawn's reason, a session id; the spans hold the
    placeholders, never the value."""
    secret = "s3cr3t-" + secrets.token_hex(16)
    session_id = "session-" + secrets.token_hex(16)
    redactor = SecretRedactor()
    placeholder = redactor.add_known_secret(secret, "password")
    observer = Observer(
        tracing=recorded.tracing,
        redact_text=redactor.redact_text,
        redact_json=redactor.redact_json_async,
    )
    observer.lifecycle(LifecyclePhase.START, "main", generation=1)
    call = observer.start_call(
        CallKind.TOOL_CALL,
        f"tool-{secret}",
        upstream="sandbox",
        client=CLIENT_KEY,
        session_id=session_id,
        arguments={"command": f"echo {secret}"},
        traceparent=CLIENT_PARENT,
    )
    assert call is not None
    with call.child("redact"):
        pass
    with pytest.raises(RuntimeError), call.child("upstream"):
        raise RuntimeError(f"upstream said {secret}")
    await call.finish(Outcome.FAILED, Failure("McpError", f"no tool named tool-{secret}", -32602))
    observer.lifecycle(LifecyclePhase.RESPAWN, "main", generation=1, reason=f"exit: {secret}")
    observer.lifecycle(LifecyclePhase.STOP, "main")
    texts = span_texts(recorded.spans)
    assert len(recorded.spans) == 6
    assert secret not in texts
    assert session_id not in texts
    assert placeholder in recorded.named(f"tools/call tool-{placeholder}").name
    call_span = recorded.named(f"tools/call tool-{placeholder}")
    assert dict(call_span.attributes or {})["trio_sandbox.session"] == session_digest(session_id)
    assert placeholder in (call_span.status.description or "")
    assert placeholder in str(dict(recorded.named("sandbox respawn").attributes or {}))


# --- the CLI's provider, from the OTEL_* variables ----------------------------------------------

CHILD_ENVIRONMENT = {
    name: value for name, value in os.environ.items() if not name.startswith("OTEL_")
}


def run_python(
    source: str, environment: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", source],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**CHILD_ENVIRONMENT, **(environment or {})},
    )


@pytest.fixture
def otel_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OTEL_* variable of the machine's, and an endpoint nothing listens on (nothing is
    exported by these tests: their spans end before the provider shuts down)."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    return monkeypatch


# --- the CLI's provider: spans made flat for the exporter child ------------------------------


def test_the_child_providers_spans_keep_what_the_api_gives_and_drop_what_it_cannot_carry() -> None:
    recorded = Recorded("child")
    tracer = recorded.provider.get_tracer("embedder", "2.0")
    span = tracer.start_span("work", attributes={"kept": "yes", "object": object()})  # type: ignore[dict-item]
    span.set_attribute("count", 3)
    span.set_attribute("list", ["a", "b"])
    span.set_attribute("mixed", ["a", object()])  # type: ignore[list-item]
    span.set_attributes({"ratio": 0.5, "flag": True})
    span.update_name("renamed work")
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR, "ignored: OK is final")
    assert span.is_recording()
    span.end()
    span.end()  # a second end is no second span
    span.set_attribute("late", "ignored")
    assert not span.is_recording()
    [exported] = recorded.spans
    assert exported.name == "renamed work"
    assert dict(exported.attributes or {}) == {
        "kept": "yes",
        "count": 3,
        "list": ("a", "b"),
        "ratio": 0.5,
        "flag": True,
    }
    assert exported.status.status_code is StatusCode.OK
    assert exported.instrumentation_scope is not None
    assert (exported.instrumentation_scope.name, exported.instrumentation_scope.version) == (
        "embedder",
        "2.0",
    )


def test_the_child_providers_current_spans_nest_as_the_api_says() -> None:
    recorded = Recorded("child")
    tracer = recorded.provider.get_tracer("embedder")
    with tracer.start_as_current_span("outer") as outer, tracer.start_as_current_span("inner"):
        pass
    inner = recorded.named("inner")
    assert parent_id(inner) == hex_ids(recorded.named("outer"))[1]
    assert hex_ids(inner)[0] == trace.format_trace_id(outer.get_span_context().trace_id)


def test_the_child_provider_takes_no_other_processor() -> None:
    recorded = Recorded("child")
    with pytest.raises(TypeError, match="exporter process only"):
        recorded.provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))


@pytest.mark.parametrize(
    ("variables", "recorded_spans"),
    [
        ({"OTEL_TRACES_SAMPLER": "always_off"}, 0),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, 0),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}, 0),
        ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}, 0),
        ({"OTEL_TRACES_SAMPLER": "always_on"}, 3),
        ({"OTEL_SDK_DISABLED": "true"}, 0),
        ({}, 3),
    ],
)
def test_the_child_provider_samples_as_the_variables_say(
    otel_environment: pytest.MonkeyPatch, variables: dict[str, str], recorded_spans: int
) -> None:
    for name, value in variables.items():
        otel_environment.setenv(name, value)
    recorded = Recorded("child")
    span = recorded.tracing.start_call(
        CallKind.TOOL_CALL, "run_command", upstream=None, client=None, parent=None
    )
    with span.child("upstream"), span.child("redact"):
        pass
    span.end(Outcome.OK, None)
    assert len(recorded.spans) == recorded_spans
    if recorded_spans == 0 and "OTEL_SDK_DISABLED" not in variables:
        # Not sampled, still a trace: the upstream is told not to sample either.
        traceparent = span.traceparent()
        assert traceparent is not None
        assert int(traceparent[-2:], 16) & 1 == 0  # the sampled flag


@pytest.mark.parametrize(
    ("variables", "service"),
    [
        ({}, "trio-sandbox"),
        ({"OTEL_SERVICE_NAME": "team-gateway"}, "team-gateway"),
        (
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes,team=infra"},
            "from-attributes",
        ),
    ],
)
def test_the_resource_names_the_service_from_the_variables_or_trio_sandbox(
    otel_environment: pytest.MonkeyPatch, variables: dict[str, str], service: str
) -> None:
    for name, value in variables.items():
        otel_environment.setenv(name, value)
    provider = configure_otel_from_environment()
    try:
        assert provider.resource.attributes[SERVICE_NAME] == service
        if "OTEL_RESOURCE_ATTRIBUTES" in variables:
            assert provider.resource.attributes["team"] == "infra"
    finally:
        provider.shutdown()


@pytest.mark.parametrize(
    ("variables", "refused"),
    [
        ({"OTEL_TRACES_EXPORTER": "console"}, "OTEL_TRACES_EXPORTER='console'"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'"),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json",
            },
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='http/json'",
        ),
    ],
)
def test_an_exporter_it_cannot_be_is_refused_by_name(
    otel_environment: pytest.MonkeyPatch, variables: dict[str, str], refused: str
) -> None:
    for name, value in variables.items():
        otel_environment.setenv(name, value)
    with pytest.raises(ObserveError, match=re.escape(refused)):
        configure_otel_from_environment()


def test_the_traces_protocol_variable_wins_over_the_general_one(
    otel_environment: pytest.MonkeyPatch,
) -> None:
    otel_environment.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    otel_environment.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    configure_otel_from_environment().shutdown()


@pytest.mark.parametrize(
    ("blocked", "missing"),
    [("opentelemetry", "opentelemetry"), ("opentelemetry.sdk", "opentelemetry.sdk.resources")],
)
def test_without_the_extra_turning_traces_on_says_what_to_install(
    blocked: str, missing: str
) -> None:
    probe = f"""
import sys
sys.modules[{blocked!r}] = None  # as if not installed
from trio_sandbox.observe import ObserveError, otel_tracing_from_environment
import trio_sandbox.observe
try:
    with otel_tracing_from_environment():
        pass
except ObserveError as error:
    print(error)
if {blocked!r} == "opentelemetry":
    try:
        trio_sandbox.observe.OtelTracing
    except ObserveError as error:
        print(error)
"""
    done = run_python(probe)
    expected = (
        f"traces need the otel extra: pip install 'trio_sandbox[otel]' (cannot import {missing})"
    )
    lines = done.stdout.splitlines()
    assert lines == [expected] * (2 if blocked == "opentelemetry" else 1), done.stderr


def test_a_global_provider_set_before_is_not_silently_kept() -> None:
    probe = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from trio_sandbox.observe import ObserveError, otel_provider_from_environment
trace.set_tracer_provider(TracerProvider())
try:
    with otel_provider_from_environment(set_global=True):
        print("used")
except ObserveError as error:
    print(error)
"""
    done = run_python(probe, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert done.stdout.strip() == (
        "--traces: this process already has a global OpenTelemetry tracer provider"
    ), done.stderr


def test_importing_the_package_imports_no_opentelemetry() -> None:
    """Traces cost nothing until they are turned on: neither the embedding API, nor the
    observe package, nor the proxy, the sandbox or the CLI imports OpenTelemetry."""
    probe = (
        "import sys, trio_sandbox, trio_sandbox.observe, trio_sandbox.proxy,"
        " trio_sandbox.sandbox, trio_sandbox.cli._main\n"
        "from trio_sandbox import open_sandbox\n"
        "from trio_sandbox.observe import configure_otel_from_environment\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('opentelemetry', 'google', 'requests')))"
    )
    done = run_python(probe)
    assert done.stdout.strip() == "[]", done.stderr


# --- end to end: a real OTLP/HTTP receiver ------------------------------------------------------

# A process traced as the CLI may be: the provider from the OTEL_* variables around trio.run, given
# to OtelTracing (TEST_MODE=tracing) or made the global one that OtelTracing() takes (global); an
# observer with a real redactor. It prints the call's trace id and the traceparent the upstream
# would get.
TRACED_PROCESS = """
import json, os
import trio
from trio_sandbox.observe import (
    CallKind, Failure, LifecyclePhase, Observer, OtelTracing, Outcome,
    otel_provider_from_environment, otel_tracing_from_environment,
)
from trio_sandbox.redact import SecretRedactor

SECRET = os.environ.pop("TEST_SECRET")
SESSION = os.environ.pop("TEST_SESSION")

async def main(tracing):
    redactor = SecretRedactor()
    redactor.add_known_secret(SECRET, "password")
    observer = Observer(
        tracing=tracing, redact_text=redactor.redact_text, redact_json=redactor.redact_json_async
    )
    observer.lifecycle(LifecyclePhase.START, "main", generation=1)
    await trio.sleep(0.01)
    observer.lifecycle(LifecyclePhase.READY, "main", generation=1)
    call = observer.start_call(
        CallKind.TOOL_CALL, "run_command", upstream="sandbox", client="token:" + "cd" * 16,
        session_id=SESSION, arguments={"command": "echo " + SECRET},
        traceparent=os.environ["TEST_CLIENT_TRACEPARENT"],
    )
    with call.child("redact"):
        pass
    with call.child("upstream"):
        await trio.sleep(0.01)
    await call.finish(Outcome.FAILED, Failure("SandboxRestarted", "lost " + SECRET, -32000))
    observer.lifecycle(LifecyclePhase.RESPAWN, "main", generation=1, reason="exit: " + SECRET)
    observer.lifecycle(LifecyclePhase.STOP, "main")
    print(json.dumps({"trace_id": call.span.trace_id, "traceparent": call.traceparent()}))

if os.environ["TEST_MODE"] == "tracing":
    with otel_tracing_from_environment() as tracing:
        trio.run(main, tracing)
else:
    with otel_provider_from_environment(set_global=True):
        trio.run(main, OtelTracing())
"""


async def run_traced_process(environment: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    done = await trio.run_process(
        [sys.executable, "-c", TRACED_PROCESS],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env={**CHILD_ENVIRONMENT, **environment},
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


async def test_spans_reach_a_real_otlp_receiver_with_their_names_parents_and_service() -> None:
    secret = "s3cr3t-" + secrets.token_hex(16)
    session_id = "session-" + secrets.token_hex(16)
    token = "otlp-token-" + secrets.token_hex(16)
    async with open_otlp_receiver() as receiver:
        with trio.fail_after(60):
            done = await run_traced_process(
                {
                    **receiver.environment,
                    "TEST_MODE": "tracing",
                    "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{token}",
                    "TEST_SECRET": secret,
                    "TEST_SESSION": session_id,
                    "TEST_CLIENT_TRACEPARENT": CLIENT_PARENT,
                }
            )
        assert done.returncode == 0, done.stderr
        # The process ends after its provider's shutdown, which sent everything: nothing to wait.
        spans = list(receiver.spans)
    printed = json.loads(done.stdout)
    names = sorted(span.name for span in spans)
    assert names == sorted(
        [
            "sandbox start",
            "tools/call run_command",
            "redact",
            "upstream",
            "sandbox respawn",
            "sandbox stop",
        ]
    )
    by_name = {span.name: span for span in spans}
    call = by_name["tools/call run_command"]
    assert (call.trace_id, call.parent_span_id, call.kind) == (CLIENT_TRACE, CLIENT_SPAN, "SERVER")
    assert call.trace_id == printed["trace_id"]
    assert printed["traceparent"] == f"00-{CLIENT_TRACE}-{call.span_id}-01"
    for name, kind in (("redact", "INTERNAL"), ("upstream", "CLIENT")):
        child = by_name[name]
        assert (child.trace_id, child.parent_span_id, child.kind) == (
            CLIENT_TRACE,
            call.span_id,
            kind,
        )
    assert call.status_code == "ERROR"
    assert call.attributes["error.type"] == "SandboxRestarted"
    assert call.attributes["trio_sandbox.session"] == session_digest(session_id)
    start = by_name["sandbox start"]
    assert start.parent_span_id is None
    assert start.status_code == "UNSET"
    assert start.end_ns - start.start_ns >= 10_000_000
    assert (
        "[REDACTED_SECRET:password:" in by_name["sandbox respawn"].attributes["trio_sandbox.reason"]
    )
    for span in spans:
        assert span.service_name == "trio-sandbox"
        assert span.resource["service.version"] == VERSION
        assert (span.scope_name, span.scope_version) == ("trio_sandbox", VERSION)
    # The headers variable is honoured (percent-decoded, as the specification says) ...
    assert receiver.requests
    for request in receiver.requests:
        assert request.headers["authorization"] == f"Bearer {token}"
        assert request.headers["content-type"] == "application/x-protobuf"
        # ... and no secret, session id or token went out in a body,
        for value in (secret, session_id, token):
            assert value.encode() not in request.body
    # nor was any printed.
    for value in (secret, session_id, token):
        assert value not in done.stdout + done.stderr


async def test_a_refused_export_is_logged_without_the_token() -> None:
    """A collector that refuses (401): the SDK says so on stderr, and the token in
    OTEL_EXPORTER_OTLP_TRACES_HEADERS is not in what it says; the traces-specific endpoint,
    compression and service name variables are the ones used. (The provider is the global one
    here, taken by an OtelTracing made without one.)"""
    token = "otlp-token-" + secrets.token_hex(16)
    async with open_otlp_receiver() as receiver:
        receiver.answer_status = 401
        with trio.fail_after(60):
            done = await run_traced_process(
                {
                    "TEST_MODE": "global",
                    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # overridden by:
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.traces_url,
                    "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"x-api-key={token}",
                    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip",
                    "OTEL_SERVICE_NAME": "team-gateway",
                    "TEST_SECRET": "s3cr3t-" + secrets.token_hex(16),
                    "TEST_SESSION": "session",
                    "TEST_CLIENT_TRACEPARENT": "not a traceparent",
                }
            )
        assert done.returncode == 0, done.stderr
        requests = list(receiver.requests)
    assert requests
    assert all(request.status == 401 for request in requests)
    assert all(request.headers["x-api-key"] == token for request in requests)
    assert all(request.headers["content-encoding"] == "gzip" for request in requests)
    sent: list[ReceivedSpan] = [span for r in requests for span in decode_spans(r.body)]
    assert {span.service_name for span in sent} == {"team-gateway"}
    call = next(span for span in sent if span.name == "tools/call run_command")
    assert call.parent_span_id is None  # the invalid traceparent began a new trace
    assert "401" in done.stderr  # the refusal was reported ...
    assert token not in done.stdout + done.stderr  # ... without the token


async def test_the_receiver_takes_only_what_a_collector_takes() -> None:
    """The harness itself: a wrong path, method, type or body is refused and keeps no span, so
    that a test passing through it saw real OTLP."""
    async with open_otlp_receiver() as receiver, httpx.AsyncClient() as http:
        protobuf = {"content-type": "application/x-protobuf"}
        refusals = [
            await http.post(receiver.url + "/v1/metrics", content=b"", headers=protobuf),
            await http.get(receiver.traces_url),
            await http.post(receiver.traces_url, content=b"{}", headers={"content-type": "a/json"}),
            await http.post(receiver.traces_url, content=b"\xff\xff\xff", headers=protobuf),
            await http.post(
                receiver.traces_url,
                content=b"not gzip",
                headers={**protobuf, "content-encoding": "gzip"},
            ),
        ]
        assert [answer.status_code for answer in refusals] == [404, 405, 415, 400, 400]
        assert receiver.spans == []
        taken = await http.post(receiver.traces_url, content=b"", headers=protobuf)
        assert taken.status_code == 200
        assert [request.status for request in receiver.requests] == [404, 405, 415, 400, 400, 200]


def test_the_exporter_process_ends_when_its_parent_is_killed() -> None:
    # The CLI's spans are sent by a child process; a host killed with SIGKILL leaves none.
    probe = """
import time
from trio_sandbox.observe import configure_otel_from_environment
provider = configure_otel_from_environment()
[processor] = provider._active_span_processor._span_processors
print(processor._child.pid, flush=True)
time.sleep(60)
"""
    parent = subprocess.Popen(
        [sys.executable, "-c", probe],
        stdout=subprocess.PIPE,
        text=True,
        env={**CHILD_ENVIRONMENT, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
    )
    assert parent.stdout is not None
    exporter = os.pidfd_open(int(parent.stdout.readline()))
    try:
        assert select.select([exporter], [], [], 0)[0] == []  # alive
        parent.kill()
        parent.wait()
        # Readable once the exporter has exited (its stdin ended with its parent).
        assert select.select([exporter], [], [], 20)[0] == [exporter]
    finally:
        os.close(exporter)
        parent.stdout.close()


# --- the exporter child's batches: the OTEL_BSP_* variables it reads ----------------------------


def _a_flat_span(number: int) -> FlatSpan:
    return (f"span {number}", 1, number + 1, 1, None, False, 1, 1, 2, {}, 0, None, "tests", None)


def test_the_batch_size_and_delay_variables_are_read(otel_environment: pytest.MonkeyPatch) -> None:
    otel_environment.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "3")
    otel_environment.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # no tick during the test
    processor = child_export_processor({"service.name": "tests"})
    try:
        for number in range(2):
            processor.take(_a_flat_span(number))
        assert len(processor._pending) == 2  # waiting for a third, or for ten minutes
        processor.take(_a_flat_span(2))
        assert processor._pending == []  # handed to the child at the third
    finally:
        processor.shutdown()


@pytest.mark.parametrize("value", ["", "many", "0", "-4", "1.5"])
def test_a_batch_variable_that_is_no_positive_number_leaves_the_default(
    otel_environment: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    otel_environment.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", value)
    otel_environment.setenv("OTEL_BSP_SCHEDULE_DELAY", value)
    processor = child_export_processor({"service.name": "tests"})
    processor.shutdown()
    assert (processor._max_batch, processor._max_delay) == (MAX_BATCH, MAX_DELAY)
    warned = [record.getMessage() for record in caplog.records]
    if value:
        assert any("OTEL_BSP_MAX_EXPORT_BATCH_SIZE is not a positive" in line for line in warned)
        assert any("OTEL_BSP_SCHEDULE_DELAY is not a positive" in line for line in warned)
        if value != "0":  # (a zero is in the defaults' digits)
            assert not any(value in line for line in warned)  # nor says the value
    else:
        assert warned == []


@pytest.mark.parametrize(
    ("batch", "delay_ms", "kept"),
    [
        ("1000000000", "1", (MAX_BATCH, 0.1)),  # one request a span, ten thousand a second: no
        ("1", "9" * 400, (1, 3600.0)),  # past what a thread's wait can take
    ],
)
def test_a_batch_variable_out_of_range_is_kept_within_it(
    otel_environment: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    batch: str,
    delay_ms: str,
    kept: tuple[int, float],
) -> None:
    otel_environment.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", batch)
    otel_environment.setenv("OTEL_BSP_SCHEDULE_DELAY", delay_ms)
    processor = child_export_processor({"service.name": "tests"})
    processor.shutdown()
    assert (processor._max_batch, processor._max_delay) == kept
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "OTEL_BSP_SCHEDULE_DELAY is kept within 100..3600000" in warned
    assert ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE is kept within" in warned) == (batch != "1")


def test_what_the_pipe_could_not_take_is_handed_over_as_it_drains() -> None:
    """A pipe smaller than a batch (the kernel may refuse to grow it) is fed as the child reads,
    not once per delay: here the delay is an hour."""
    reader = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.buffer.read()"], stdin=subprocess.PIPE
    )
    processor = ChildExportProcessor(reader, {"service.name": "t"}, max_batch=64, max_delay=3600)
    assert reader.stdin is not None
    fcntl.fcntl(reader.stdin.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    padded = {"padding": "x" * 200}
    try:
        for number in range(640):  # ten batches of some 16 KiB each
            processor.take((*_a_flat_span(number)[:9], padded, 0, None, "tests", None))
        deadline = time.monotonic() + 30
        while processor._out and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not processor._out
    finally:
        processor.shutdown()
    assert reader.returncode == 0
