"""The CLI's tracer provider: the SDK's, whose tracers make spans that go straight to the
exporter child as the flat tuples it reads (:class:`ChildExportTracerProvider`).

An SDK span costs the proxy about 40 us to start and end (a sampler call, attribute cleaning
under a lock, the processor chain) and 13 us more to flatten for the child; a call has three
spans. Here a span is a handful of slots, ended into one tuple, about a fifth of that: the
difference between traces costing the proxy a fifth of its calls and a few per cent. The SDK
still decides what it should: the sampler (``OTEL_TRACES_SAMPLER``; the default and always_on,
which sample every root span as it is, are not asked for a root: 4.0 → 2.5 us a span), the
ids, the resource, ``OTEL_SDK_DISABLED``; and its OTLP exporter sends the spans, in the child.

What is not kept: span events and links (trio_sandbox's spans have none, and never record an
exception). A span whose parent is a span of this process follows its parent's sampling
decision, as every sampler the SDK ships decides for it anyway (parent-based ones by the
parent; ratio ones by the trace id, which parent and child share; always on or off alike).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, DEFAULT_ON, Decision
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util import types

from ._otel_child import FlatSpan

_SCALARS = (str, bool, int, float)


def _attribute_value(value: object) -> Any:
    """``value`` as an attribute may be (a scalar, or a sequence of them), else None: what the
    child cannot carry is left out, as the SDK leaves out what it may not hold."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        items = tuple(value)
        if all(isinstance(item, _SCALARS) for item in items):
            return items
    return None


class _ChildSpan(trace.Span):
    """A recording span of :class:`_ChildTracer`; ending it hands one tuple to the processor."""

    __slots__ = (
        "_attributes",
        "_context",
        "_end",
        "_flags",
        "_ids",
        "_kind",
        "_name",
        "_parent_remote",
        "_parent_span_id",
        "_scope",
        "_span_id",
        "_start",
        "_status_code",
        "_status_description",
        "_take",
        "_trace_id",
        "_trace_state",
    )

    def __init__(
        self,
        take: Callable[[FlatSpan], None],
        scope: tuple[str, str | None],
        ids: IdGenerator,
        name: str,
        trace_id: int,
        flags: TraceFlags,
        trace_state: TraceState | None,
        parent: tuple[int, bool] | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        start: int,
    ) -> None:
        self._take = take
        self._scope = scope
        self._ids = ids
        self._name = name
        # The context's parts as they were made (and the parent's span id and remoteness): its
        # SpanContext, a tuple whose every field is a property, is built only when asked for.
        self._trace_id = trace_id
        self._span_id = ids.generate_span_id()
        self._flags = flags
        self._trace_state = trace_state
        self._context: SpanContext | None = None
        self._parent_span_id: int | None = parent[0] if parent is not None else None
        self._parent_remote = parent[1] if parent is not None else False
        self._kind = kind
        self._attributes = attributes
        self._start = start
        self._end: int | None = None
        self._status_code = StatusCode.UNSET
        self._status_description: str | None = None

    def get_span_context(self) -> SpanContext:
        if self._context is None:
            self._context = SpanContext(
                self._trace_id,
                self._span_id,
                is_remote=False,
                trace_flags=self._flags,
                trace_state=self._trace_state,
            )
        return self._context

    def w3c_ids(self) -> tuple[int, int, int]:
        """The trace id, span id and flags (what a ``traceparent`` carries), as made."""
        return self._trace_id, self._span_id, int(self._flags)

    def start_child(self, name: str, kind: SpanKind) -> trace.Span:
        """A child of this span, as the tracer's ``start_span`` would make it for a parent in
        this process (same trace, same sampling), without looking the parent up in a context:
        a call's two child spans are made so."""
        return _ChildSpan(
            self._take,
            self._scope,
            self._ids,
            name,
            self._trace_id,
            self._flags,
            self._trace_state,
            (self._span_id, False),
            kind,
            {},
            time.time_ns(),
        )

    def is_recording(self) -> bool:
        return self._end is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end is None:
            kept = _attribute_value(value)
            if kept is not None:
                self._attributes[key] = kept

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        pass  # see the module's docstring

    def update_name(self, name: str) -> None:
        if self._end is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end is not None or self._status_code is StatusCode.OK:
            return  # OK is final, as the specification says
        if isinstance(status, Status):
            code, description = status.status_code, status.description
        else:
            code = status
        self._status_code = code
        self._status_description = description if code is StatusCode.ERROR else None

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        pass  # see the module's docstring

    def end(self, end_time: int | None = None) -> None:
        if self._end is not None:
            return
        self._end = end = end_time if end_time is not None else time.time_ns()
        self._take(
            (
                self._name,
                self._trace_id,
                self._span_id,
                int(self._flags),
                self._parent_span_id,
                self._parent_remote,
                self._kind._value_,  # the attribute Enum's .value property reads
                self._start,
                end,
                self._attributes,
                self._status_code._value_,
                self._status_description,
                *self._scope,
            )
        )


class _ChildTracer(trace.Tracer):
    def __init__(
        self,
        provider: TracerProvider,
        take: Callable[[FlatSpan], None],
        scope: tuple[str, str | None],
    ) -> None:
        self._sampler = provider.sampler
        # The SDK's default (parent-based, always on; OTEL_TRACES_SAMPLER unset) and always_on
        # sample every root span, as they are, with no trace state: not asked again per call.
        self._samples_every_root = provider.sampler in (DEFAULT_ON, ALWAYS_ON)
        self._ids = provider.id_generator
        self._take = take
        self._scope = scope

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        parent: SpanContext | None = None
        if context is None or context:  # an empty context has no parent to look up
            parent = trace.get_current_span(context).get_span_context()
        if parent is not None and parent.is_valid:
            trace_id = parent.trace_id
            random_id = parent.trace_flags.random_trace_id
        else:
            parent = None
            trace_id = self._ids.generate_trace_id()
            random_id = self._ids.is_trace_id_random()
        trace_state: TraceState | None = None
        if parent is not None and not parent.is_remote:
            sampled = parent.trace_flags.sampled  # see the module's docstring
            trace_state = parent.trace_state
        elif parent is None and self._samples_every_root:
            sampled = True
        else:
            decision = self._sampler.should_sample(context, trace_id, name, kind, attributes, links)
            sampled = decision.decision is Decision.RECORD_AND_SAMPLE
            trace_state = decision.trace_state
            attributes = decision.attributes  # the sampler's: the given ones, and maybe more
        flags = TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT
        if random_id:
            flags |= TraceFlags.RANDOM_TRACE_ID
        if not sampled:
            return trace.NonRecordingSpan(
                SpanContext(
                    trace_id,
                    self._ids.generate_span_id(),
                    is_remote=False,
                    trace_flags=TraceFlags(flags),
                    trace_state=trace_state,
                )
            )
        kept = {}
        for key, value in (attributes or {}).items():
            value = _attribute_value(value)
            if value is not None:
                kept[key] = value
        start = start_time if start_time is not None else time.time_ns()
        return _ChildSpan(
            self._take,
            self._scope,
            self._ids,
            name,
            trace_id,
            TraceFlags(flags),
            trace_state,
            (parent.span_id, parent.is_remote) if parent is not None else None,
            kind,
            kept,
            start,
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]  # the API's decorator is private
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception,
            set_status_on_exception,
        )  # fmt: skip
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class ChildExportTracerProvider(TracerProvider):
    """An SDK provider whose tracers' spans go to ``processor`` (the exporter child's) and
    nowhere else, as flat tuples (see the module's docstring). Shutting it down shuts the
    processor down (its spans are sent); another processor cannot be added."""

    def __init__(
        self,
        processor: SpanProcessor,
        take: Callable[[FlatSpan], None],
        *,
        resource: Resource,
    ) -> None:
        """``take``: where an ended span goes (the child's processor's ``take``); ``processor``
        is shut down and flushed with the provider."""
        super().__init__(resource=resource)
        super().add_span_processor(processor)
        self._take = take
        self._disabled_by_variable = (
            os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
        )
        self._child_tracers: dict[tuple[str, str | None], trace.Tracer] = {}

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
    ) -> trace.Tracer:
        if self._disabled_by_variable:
            return trace.NoOpTracer()
        scope = (instrumenting_module_name or "", instrumenting_library_version)
        tracer = self._child_tracers.get(scope)
        if tracer is None:
            tracer = self._child_tracers[scope] = _ChildTracer(self, self._take, scope)
        return tracer

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        raise TypeError(
            "the spans of this provider go to its exporter process only; for other processors"
            " make an SDK TracerProvider"
        )
