"""Where the CLI's spans are encoded and sent: a child process running the SDK's OTLP/HTTP
exporter (``python -m trio_sandbox.observe._otel_child``).

Encoding a span for OTLP costs about 25 us of Python, and sending a batch more; in the proxy's
process that work takes the interpreter lock from the event loop, and it cost the proxy a fifth
of its calls. Here it runs beside the proxy instead. The parent writes frames on our stdin: a
4-byte big-endian length, then a ``marshal``-encoded value: first the resource's attributes (a
dict), then batches of spans (lists of :func:`flat_span` tuples). At the end of stdin (the parent
finished, or died) the spans received are sent and the exporter is shut down. The OTEL_*
variables are the exporter's to read, as the parent's SDK would have.

The child encodes the flat tuples itself (:func:`encode_batch`, 7 us a span against the SDK's
21) and has the exporter send the bytes: on a small machine its CPU is the proxy's CPU too.
"""

from __future__ import annotations

import logging
import marshal
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any, Final, TypeAlias

# (name, trace id, span id, trace flags, parent span id or None, parent remote, kind, start ns,
#  end ns, attributes, status code, status description or None, scope name, scope version)
FlatSpan: TypeAlias = tuple[Any, ...]
HEADER_BYTES: Final = 4
NICENESS: Final = 10
# The exporter's own bound on a request (its max_request_size default), kept on our path too.
MAX_REQUEST_BYTES: Final = 64 * 1024 * 1024
# OTLP's span flags: the parent's remoteness is known, and it is remote.
_HAS_IS_REMOTE: Final = 0x100
_IS_REMOTE: Final = 0x200

logger = logging.getLogger("trio_sandbox.observe")


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


def _any_value(value: Any) -> Any:
    """``value`` as an OTLP AnyValue, by the SDK encoder's rules (a flat span's values are
    scalars or tuples of them; an SDK span's or the resource's may be more)."""
    from opentelemetry.proto.common.v1.common_pb2 import (
        AnyValue,
        ArrayValue,
        KeyValue,
        KeyValueList,
    )

    # bool before int: a bool is an int.
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, Sequence):
        return AnyValue(array_value=ArrayValue(values=[_any_value(item) for item in value]))
    if isinstance(value, Mapping):
        pairs = [KeyValue(key=str(key), value=_any_value(item)) for key, item in value.items()]
        return AnyValue(kvlist_value=KeyValueList(values=pairs))
    raise TypeError(f"no OTLP value for a {type(value).__name__}")


# Encoded key-values with a short text value, by (key, value): most repeat from span to span (the
# method, the upstream, the client, the outcome), and a copy of a made message costs half of
# making it. Cleared when full: a value made per call (a stateless session's digest) only cycles
# it. Long values (a client's URI or tool name can be megabytes) are never kept.
_TEXT_KEY_VALUES: dict[tuple[str, str], Any] = {}
MAX_CACHED_KEY_VALUES: Final = 4096
MAX_CACHED_CHARS: Final = 256


def _key_values(attributes: dict[str, Any]) -> list[Any]:
    """The attributes as OTLP key-values; one protobuf cannot hold (an int past 64 bits, a lone
    surrogate) is left out, as the SDK's encoder leaves it out."""
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    encoded = []
    for key, value in attributes.items():
        text = type(value) is str and len(key) + len(value) <= MAX_CACHED_CHARS
        if text:
            made = _TEXT_KEY_VALUES.get((key, value))
            if made is not None:
                encoded.append(made)
                continue
        try:
            made = KeyValue(key=key, value=_any_value(value))
        except (ValueError, TypeError):
            continue
        if text:
            if len(_TEXT_KEY_VALUES) >= MAX_CACHED_KEY_VALUES:
                _TEXT_KEY_VALUES.clear()
            _TEXT_KEY_VALUES[(key, value)] = made
        encoded.append(made)
    return encoded


def encode_batch(batch: list[FlatSpan], resource: Any) -> tuple[bytes | None, int]:
    """A batch of :func:`flat_span` tuples as the body of an OTLP/HTTP export (protobuf),
    built from the flat values with the OTLP messages themselves: the same message the SDK's
    ``encode_spans`` makes of the equivalent SDK spans, at a third of its cost (no SDK span
    objects in between, repeated key-values copied). Returns it (None: no span left to send)
    and how many spans were left out: a span protobuf cannot hold (a name with a lone
    surrogate, which a client can send) costs only itself; with the SDK's encoder it cost its
    whole batch."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

    by_scope: dict[tuple[str, str | None], list[Any]] = {}
    left_out = 0
    for item in batch:
        (name, trace_id, span_id, _flags, parent_id, parent_remote, kind, start, end,
         attributes, code, description, scope_name, scope_version) = item  # fmt: skip
        try:
            span = Span(
                trace_id=trace_id.to_bytes(16, "big"),
                span_id=span_id.to_bytes(8, "big"),
                parent_span_id=parent_id.to_bytes(8, "big") if parent_id is not None else b"",
                name=name,
                kind=kind + 1,  # the API's SpanKind counts from INTERNAL = 0, OTLP's from 1
                start_time_unix_nano=start,
                end_time_unix_nano=end,
                attributes=_key_values(attributes),
                status=Status(code=code, message=description),
                flags=_HAS_IS_REMOTE
                | (_IS_REMOTE if parent_remote and parent_id is not None else 0),
            )
        except (ValueError, TypeError, OverflowError):
            left_out += 1
            continue
        by_scope.setdefault((scope_name, scope_version), []).append(span)
    if not by_scope:
        return None, left_out
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=_key_values(dict(resource.attributes))),
                scope_spans=[
                    ScopeSpans(
                        scope=InstrumentationScope(name=name, version=version or ""), spans=spans
                    )
                    for (name, version), spans in by_scope.items()
                ],
                schema_url=resource.schema_url,
            )
        ]
    )
    return request.SerializePartialToString(), left_out


def _byte_sender(exporter: Any) -> Callable[[bytes], Any] | None:
    """The exporter's own sending of an encoded body (its retries, compression, headers and
    TLS from the OTEL_* variables), where this release of the exporter has one to call: its
    HTTP client's ``export`` (not public: opentelemetry-exporter-otlp-proto-http 1.45 has it,
    a test says when the installed release does not). None on other releases: the child then
    hands the exporter SDK spans, as the SDK would."""
    send = getattr(getattr(exporter, "_client", None), "export", None)
    return send if callable(send) else None


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
    send = _byte_sender(exporter)
    frames = _frames(sys.stdin.buffer)
    resource = Resource(next(frames, {}))
    scopes: dict[Any, Any] = {}
    try:
        for batch in frames:
            if send is None:
                exporter.export(readable_spans(batch, resource, scopes))
                continue
            # One batch that cannot go (whatever the reason) costs only itself: the child lives
            # on for the next, where dying would leave the parent dropping every span after.
            try:
                body, unencodable = encode_batch(batch, resource)
                if unencodable:
                    logger.warning("traces: %d spans could not be encoded for OTLP", unencodable)
                if body is None:
                    continue
                if len(body) <= MAX_REQUEST_BYTES:
                    send(body)  # says itself, on stderr, when it could not
                else:
                    logger.warning("traces: a batch of %d bytes is too large to send", len(body))
            except Exception:
                logger.exception("traces: a batch of %d spans could not be sent", len(batch))
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
