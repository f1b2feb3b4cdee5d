"""Spans for calls and for a sandbox's life, on the OpenTelemetry API: :class:`OtelTracing`.

Library instrumentation: the spans come from ``get_tracer("trio_sandbox", VERSION)`` of the
provider given, or of the global one, so an embedder who configured OpenTelemetry gets these
spans in their own pipeline; the CLI's ``--traces`` makes its provider from the ``OTEL_*``
variables (:mod:`._otel_setup`).

A call's span is a SERVER span named as the MCP semantic conventions say (``tools/call NAME``,
``resources/read``), a child of the client's ``traceparent`` when it sent a valid one (a new trace
otherwise). Parents are always passed explicitly, never taken from or left in the current context:
a Trio task inherits a copy of its parent's context variables, so a span made current in one task
would become the parent of unrelated spans in every task it starts.

Nothing here adds to what the :class:`~._observer.Observer` passes, and the Observer passes only
what it has redacted: a tool's name or a resource's URI, the upstream, the client's identity key
(a digest), the session's digest, a failure's type and redacted message, a sandbox's respawn
reason. No argument, result or raised exception is recorded (the API's own exception recording is
never used: an exception's message may hold a value the redactor never saw).

Importing this module imports the OpenTelemetry API, which ``import trio_sandbox.observe`` does
not: the package exports these names lazily, and an :class:`ObserveError` says which extra to
install when the API is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Final

import attrs

from ..program import VERSION
from ._errors import otel_extra_missing
from ._records import (
    CallKind,
    Failure,
    LifecyclePhase,
    LifecycleRecord,
    Outcome,
    ellipsized,
)

try:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as error:
    raise otel_extra_missing(error) from error

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

INSTRUMENTATION_NAME: Final = "trio_sandbox"

# Attributes of the MCP semantic conventions (OpenTelemetry, "Semantic conventions for Model
# Context Protocol", development status) and the general ones they use.
MCP_METHOD_NAME: Final = "mcp.method.name"
MCP_RESOURCE_URI: Final = "mcp.resource.uri"
GEN_AI_PROMPT_NAME: Final = "gen_ai.prompt.name"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
ERROR_TYPE: Final = "error.type"
RPC_RESPONSE_STATUS_CODE: Final = "rpc.response.status_code"
# Ours. The session is the audit log's digest of the MCP session id, not the id (the id is half
# of what a remote client presents), hence not the conventions' mcp.session.id.
MAX_TRACEPARENT: Final = 512
UPSTREAM: Final = "trio_sandbox.upstream"
CLIENT: Final = "trio_sandbox.client"
SESSION: Final = "trio_sandbox.session"
OUTCOME: Final = "trio_sandbox.outcome"
SANDBOX: Final = "trio_sandbox.sandbox"
GENERATION: Final = "trio_sandbox.generation"
REASON: Final = "trio_sandbox.reason"
LIMIT: Final = "trio_sandbox.limit"
COUNT: Final = "trio_sandbox.count"

METHODS: Final = {
    CallKind.TOOL_CALL: "tools/call",
    CallKind.RESOURCE_READ: "resources/read",
    CallKind.PROMPT_GET: "prompts/get",
}
# A tool_error result is an error for the conventions too (error.type "tool_error").
TOOL_ERROR: Final = "tool_error"
# The conventions' error.type when nothing better is known.
OTHER_ERROR: Final = "_OTHER"
# At most this many start spans stay open; one more ends the oldest as abandoned: a sandbox that
# keeps failing to start must not hold spans (and their memory) without end.
MAX_OPEN_STARTS: Final = 64
# A status description is a failure's (redacted) message, kept short for a trace viewer.
MAX_DESCRIPTION_CHARS: Final = 512
# A tool's name or a resource's URI is the client's to choose, up to a message's size: in a
# span's name and attributes it is cut here, so that a few calls with megabyte names cannot
# crowd other calls' spans out of the exporter's bounded buffer and batches.
MAX_NAME_CHARS: Final = 1024

_PROPAGATOR: Final = TraceContextTextMapPropagator()
_CHILD_KINDS: Final = {"upstream": trace.SpanKind.CLIENT}


def _nanoseconds(seconds: float) -> int:
    return int(seconds * 1e9)


def _description(message: str | None) -> str | None:
    return message[:MAX_DESCRIPTION_CHARS] if message else None


def _fail(span: trace.Span, error_type: str, message: str | None = None) -> None:
    span.set_attribute(ERROR_TYPE, error_type)
    span.set_status(trace.Status(trace.StatusCode.ERROR, _description(message)))


@attrs.define(eq=False)
class _ChildBlock:
    """The block of a call's child span (a class, not a generator: it is entered twice a call)."""

    _call: OtelCallSpan
    _name: str
    _span: trace.Span | None = None

    def __enter__(self) -> None:
        self._span = self._call.start_child(
            self._name, _CHILD_KINDS.get(self._name, trace.SpanKind.INTERNAL)
        )

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        span = self._span
        assert span is not None, "a child span's block is entered before it ends"
        if error_type is not None:
            _fail(span, error_type.__name__)
        span.end()


def _span_ids(span: trace.Span) -> tuple[int, int, int] | None:
    """A span's trace id, span id and flags, None when its context is not valid. The CLI
    provider's spans give them as made (their SpanContext, all properties, is built only when
    asked for)."""
    ids = getattr(span, "w3c_ids", None)
    if ids is not None:
        made: tuple[int, int, int] = ids()
        return made
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return context.trace_id, context.span_id, int(context.trace_flags)


@attrs.define(eq=False)
class OtelCallSpan:
    """A call's span (the :class:`~._observer.CallSpan` of :class:`OtelTracing`)."""

    _tracer: trace.Tracer
    _span: trace.Span
    _ended: bool = False

    @property
    def trace_id(self) -> str | None:
        """The trace's id, 32 hex digits (None: no trace, e.g. the API has no provider)."""
        ids = _span_ids(self._span)
        return f"{ids[0]:032x}" if ids is not None else None

    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` naming this span as the parent, for the upstream's ``_meta``
        (None: no valid span context to pass on)."""
        # The propagator's own format (version 00), written here: the propagator's inject
        # walks the context for the span again on every call.
        ids = _span_ids(self._span)
        if ids is None:
            return None
        trace_id, span_id, flags = ids
        return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"

    def child(self, name: str) -> _ChildBlock:
        """A child span for the block (``upstream`` is a CLIENT span: the hop to the upstream);
        an exception out of the block marks it failed by the exception's type alone."""
        return _ChildBlock(self, name)

    def start_child(self, name: str, kind: trace.SpanKind) -> trace.Span:
        span = self._span
        # The CLI provider's spans make their own children: no context to look up, no sampler
        # to ask for a span whose parent is in this process.
        start_child = getattr(span, "start_child", None)
        if start_child is not None:
            child: trace.Span = start_child(name, kind)
            return child
        # Any other provider: through the API, with a fresh context holding only this span as
        # the explicit parent.
        return self._tracer.start_span(
            name,
            context=trace.set_span_in_context(span, Context()),
            kind=kind,
            record_exception=False,
            set_status_on_exception=False,
        )

    def end(self, outcome: Outcome, failure: Failure | None, upstream: str | None = None) -> None:
        """End the span once (a second end is ignored), as the conventions say: a tool_error
        result and a failure set ``error.type`` and the ERROR status. ``upstream``: the one the
        call was routed to, known only after the span began."""
        if self._ended:
            return
        self._ended = True
        span = self._span
        span.set_attribute(OUTCOME, outcome.value)
        if upstream is not None:
            span.set_attribute(UPSTREAM, upstream)
        if outcome is Outcome.TOOL_ERROR:
            _fail(span, TOOL_ERROR)
        elif outcome is Outcome.FAILED:
            if failure is None:
                _fail(span, OTHER_ERROR)
            else:
                if failure.code is not None:
                    span.set_attribute(RPC_RESPONSE_STATUS_CODE, str(failure.code))
                _fail(span, failure.type, failure.message)
        span.end()


@attrs.define(eq=False)
class OtelTracing:
    """The :class:`~._observer.Tracing` of OpenTelemetry: call spans and a sandbox's life.

    ``tracer_provider``: where the spans go; None takes the global provider (whichever the
    embedder sets, even after this is made). Raises :class:`ObserveError` on import when the
    ``otel`` extra is missing.
    """

    tracer_provider: trace.TracerProvider | None = None
    _tracer: trace.Tracer = attrs.field(init=False)
    # (sandbox, generation) -> its start span, until it is ready or cannot be; oldest first.
    _starting: dict[tuple[str, int | None], trace.Span] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self._tracer = trace.get_tracer(
            INSTRUMENTATION_NAME, VERSION, tracer_provider=self.tracer_provider
        )

    # -- calls ---------------------------------------------------------------------------

    def start_call(
        self,
        kind: CallKind,
        name: str,
        *,
        upstream: str | None,
        client: str | None,
        parent: str | None,
        session: str | None = None,
    ) -> OtelCallSpan:
        """A call's SERVER span, a child of ``parent`` (the client's ``traceparent``) when that
        is a valid one, else the root of a new trace (never a child of whatever span happens to
        be current in the calling task)."""
        method = METHODS[kind]
        name = ellipsized(name, MAX_NAME_CHARS)
        attributes: dict[str, AttributeValue] = {MCP_METHOD_NAME: method}
        if kind is CallKind.TOOL_CALL:
            span_name = f"{method} {name}"
            attributes[GEN_AI_TOOL_NAME] = name
            attributes[GEN_AI_OPERATION_NAME] = "execute_tool"
        elif kind is CallKind.PROMPT_GET:
            span_name = f"{method} {name}"
            attributes[GEN_AI_PROMPT_NAME] = name
        else:
            span_name = method  # a URI is no span name: the conventions keep names low-cardinality
            attributes[MCP_RESOURCE_URI] = name
        if upstream is not None:
            attributes[UPSTREAM] = upstream
        if client is not None:
            attributes[CLIENT] = client
        if session is not None:
            attributes[SESSION] = session
        if parent is None or len(parent) > MAX_TRACEPARENT:
            # Too long to be one (a version-00 traceparent is 55 characters): older API
            # releases parse an uncapped header in quadratic time.
            parent_context = Context()
        else:
            # An invalid or foreign-version traceparent extracts to the empty context: a new trace.
            parent_context = _PROPAGATOR.extract({"traceparent": parent}, context=Context())
        span = self._tracer.start_span(
            span_name,
            context=parent_context,
            kind=trace.SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        return OtelCallSpan(self._tracer, span)

    # -- a sandbox's life ----------------------------------------------------------------

    def lifecycle(self, record: LifecycleRecord) -> None:
        """``sandbox start`` from START to the READY of the same (sandbox, generation), failed
        when a respawn, a failure or the stop comes first; ``sandbox respawn``, ``sandbox
        failed``, ``sandbox stop`` and ``sandbox limit_hit`` are instants (spans of no
        duration) at the record's time."""
        at = _nanoseconds(record.at)
        key = (record.sandbox, record.generation)
        phase = record.phase
        if phase is LifecyclePhase.START:
            self._end_start(key, at, "abandoned", "started again before it was ready")
            self._starting[key] = self._tracer.start_span(
                "sandbox start",
                context=Context(),
                attributes=self._lifecycle_attributes(record),
                start_time=at,
                record_exception=False,
                set_status_on_exception=False,
            )
            while len(self._starting) > MAX_OPEN_STARTS:
                oldest = next(iter(self._starting))
                self._end_start(oldest, at, "abandoned", "never ready")
            return
        if phase is LifecyclePhase.READY:
            span = self._starting.pop(key, None)
            if span is not None:
                span.end(end_time=at)
            return
        if phase is LifecyclePhase.RESPAWN:
            self._end_start(key, at, "respawn", record.reason)
        elif phase in (LifecyclePhase.FAILED, LifecyclePhase.STOP):
            for other in [k for k in self._starting if k[0] == record.sandbox]:
                self._end_start(other, at, phase.value, record.reason)
        instant = self._tracer.start_span(
            f"sandbox {phase.value}",
            context=Context(),
            attributes=self._lifecycle_attributes(record),
            start_time=at,
            record_exception=False,
            set_status_on_exception=False,
        )
        if phase is LifecyclePhase.FAILED:
            _fail(instant, "failed", record.reason)
        instant.end(end_time=at)

    def _end_start(
        self, key: tuple[str, int | None], at: int, error_type: str, message: str | None
    ) -> None:
        span = self._starting.pop(key, None)
        if span is not None:
            _fail(span, error_type, message)
            span.end(end_time=at)

    @staticmethod
    def _lifecycle_attributes(record: LifecycleRecord) -> Mapping[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {SANDBOX: record.sandbox}
        if record.generation is not None:
            attributes[GENERATION] = record.generation
        if record.reason is not None:
            attributes[REASON] = record.reason
        if record.limit is not None:
            attributes[LIMIT] = record.limit
        if record.count is not None:
            attributes[COUNT] = record.count
        return attributes
