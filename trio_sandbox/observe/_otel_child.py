"""Where the CLI's spans are encoded and sent: a child process running the SDK's OTLP/HTTP
exporter (``python -m trio_sandbox.observe._otel_child``).

Encoding a span for OTLP costs about 25 us of Python, and sending a batch more; in the proxy's
process that work takes the interpreter lock from the event loop, and it cost the proxy a fifth
of its calls. Here it runs beside the proxy instead. The parent writes frames on our stdin: a
4-byte big-endian length, then a ``marshal``-encoded value: first the resource's attributes (a
dict), then batches of spans (lists of :func:`flat_span` tuples). At the end of stdin (the parent
finished, or died) the spans received are sent and the exporter is shut down. The OTEL_*
variables are the exporter's to read, as the parent's SDK would have.
"""

from __future__ import annotations

import marshal
import os
import signal
import sys
from collections.abc import Iterator
from typing import IO, Any, Final, TypeAlias

# (name, trace id, span id, trace flags, parent span id or None, parent remote, kind, start ns,
#  end ns, attributes, status code, status description or None, scope name, scope version)
FlatSpan: TypeAlias = tuple[Any, ...]
HEADER_BYTES: Final = 4
NICENESS: Final = 10


def flat_span(span: Any) -> FlatSpan:
    """A finished SDK span as plain values ``marshal`` can carry."""
    context = span.context
    parent = span.parent
    scope = span.instrumentation_scope
    status = span.status
    return (
        span.name,
        context.trace_id,
        context.span_id,
        int(context.trace_flags),
        parent.span_id if parent is not None else None,
        bool(parent.is_remote) if parent is not None else False,
        span.kind.value,
        span.start_time,
        span.end_time,
        dict(span.attributes or {}),
        status.status_code.value,
        status.description,
        scope.name if scope is not None else "",
        scope.version if scope is not None else None,
    )


def frame(value: Any) -> bytes:
    data = marshal.dumps(value)
    return len(data).to_bytes(HEADER_BYTES, "big") + data


def _frames(stream: IO[bytes]) -> Iterator[Any]:
    while True:
        header = stream.read(HEADER_BYTES)
        if len(header) < HEADER_BYTES:
            return
        data = stream.read(int.from_bytes(header, "big"))
        yield marshal.loads(data)


def readable_spans(batch: list[FlatSpan], resource: Any, scopes: dict[Any, Any]) -> list[Any]:
    """The SDK's spans of a batch of :func:`flat_span` tuples (``scopes``: a cache of their
    instrumentation scopes, kept by the caller)."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    spans = []
    for item in batch:
        (name, trace_id, span_id, flags, parent_id, parent_remote, kind, start, end,
         attributes, code, description, scope_name, scope_version) = item  # fmt: skip
        scope = scopes.get((scope_name, scope_version))
        if scope is None:
            scope = scopes[(scope_name, scope_version)] = InstrumentationScope(
                scope_name, scope_version
            )
        parent = (
            SpanContext(trace_id, parent_id, parent_remote, TraceFlags(flags))
            if parent_id is not None
            else None
        )
        spans.append(
            ReadableSpan(
                name,
                context=SpanContext(trace_id, span_id, False, TraceFlags(flags)),
                parent=parent,
                resource=resource,
                attributes=attributes,
                kind=SpanKind(kind),
                status=Status(StatusCode(code), description),
                start_time=start,
                end_time=end,
                instrumentation_scope=scope,
            )
        )
    return spans


def main() -> None:
    # The parent says when it is done (the end of stdin): a Ctrl-C to the terminal's process
    # group must not lose the spans it is still handing over.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Sending spans is background work: when the CPUs are short, the proxy serving calls goes
    # first, and the spans wait in the pipe and the parent's bounded buffer.
    os.nice(NICENESS)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource

    exporter = OTLPSpanExporter()
    frames = _frames(sys.stdin.buffer)
    resource = Resource(next(frames, {}))
    scopes: dict[Any, Any] = {}
    try:
        for batch in frames:
            exporter.export(readable_spans(batch, resource, scopes))
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
