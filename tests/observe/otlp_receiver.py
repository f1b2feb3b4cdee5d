"""A real OTLP/HTTP trace receiver on 127.0.0.1, for tests: :func:`open_otlp_receiver`.

It serves ``POST /v1/traces`` (``application/x-protobuf``, optionally gzip- or deflate-encoded) as
a collector does, decodes each body with OpenTelemetry's own protobuf classes
(``ExportTraceServiceRequest``) and keeps every span it received, flattened with its resource
and scope (:class:`ReceivedSpan`), and every request's headers and body, decompressed
(:class:`ReceivedRequest`), so that a test can check what an exporter sent and grep what it
must not have sent. ``answer_status`` makes it refuse exports (401, 503, ...).

    async with open_otlp_receiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
        ...  # something exports to it
        spans = await receiver.wait_for_spans(3)
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from trio_sandbox.mcp import BoundServer, serve_http
from trio_sandbox.mcp.lowlevel import serve_lifespan

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

TRACES_PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"
MAX_BODY_BYTES = 16 * 1024 * 1024


def any_value(value: AnyValue) -> Any:
    """An OTLP attribute value as Python (arrays as tuples, key-value lists as dicts)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return tuple(any_value(item) for item in value.array_value.values)
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, which)


def attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    pair: KeyValue
    for pair in pairs:
        found[pair.key] = any_value(pair.value)
    return found


@attrs.frozen
class ReceivedSpan:
    """One span as the receiver got it; ids in lower-case hex, kinds and status codes by their
    OTLP names without prefix (``SERVER``, ``ERROR``)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str
    attributes: Mapping[str, Any]
    status_code: str
    status_message: str
    start_ns: int
    end_ns: int
    events: tuple[str, ...]
    resource: Mapping[str, Any]
    scope_name: str
    scope_version: str

    @property
    def service_name(self) -> str | None:
        name = self.resource.get("service.name")
        return name if isinstance(name, str) else None


@attrs.frozen
class ReceivedRequest:
    """One HTTP request as it came (headers lower-cased; the body decompressed when its
    content-encoding is one the receiver knows), and the status it was answered."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    status: int


def decode_spans(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest.FromString(body)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                        attributes=attributes(span.attributes),
                        status_code=Status.StatusCode.Name(span.status.code).removeprefix(
                            "STATUS_CODE_"
                        ),
                        status_message=span.status.message,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        events=tuple(event.name for event in span.events),
                        resource=resource,
                        scope_name=scope_spans.scope.name,
                        scope_version=scope_spans.scope.version,
                    )
                )
    return spans


def _decoded(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    raise ValueError(f"content-encoding {encoding!r}")


@attrs.define(eq=False)
class OtlpReceiver:
    """What the receiver got so far; ``url`` is the base URL (``OTEL_EXPORTER_OTLP_ENDPOINT``)."""

    url: str = ""
    spans: list[ReceivedSpan] = attrs.field(factory=list)
    requests: list[ReceivedRequest] = attrs.field(factory=list)
    # The status exports are answered with: 200 takes them, anything else refuses them.
    answer_status: int = 200
    _arrived: trio.Event = attrs.field(factory=trio.Event)

    @property
    def traces_url(self) -> str:
        """The full traces endpoint (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)."""
        return self.url + TRACES_PATH

    @property
    def environment(self) -> dict[str, str]:
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.url}

    async def wait_for_spans(self, count: int) -> list[ReceivedSpan]:
        """The spans, once at least ``count`` have come (bound it with a timeout)."""
        while len(self.spans) < count:
            await self._arrived.wait()
        return list(self.spans)

    async def wait_for_requests(self, count: int) -> list[ReceivedRequest]:
        while len(self.requests) < count:
            await self._arrived.wait()
        return list(self.requests)

    def named(self, name: str) -> ReceivedSpan:
        """The one span called ``name``."""
        [span] = [span for span in self.spans if span.name == name]
        return span

    def _note(self, request: ReceivedRequest, spans: list[ReceivedSpan]) -> None:
        self.requests.append(request)
        self.spans.extend(spans)
        self._arrived.set()
        self._arrived = trio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY_BYTES:
                await _answer(send, 413, b"")
                return
            if not message.get("more_body", False):
                break
        spans: list[ReceivedSpan] = []
        try:
            body = _decoded(body, headers.get("content-encoding", ""))
        except (OSError, EOFError, ValueError, zlib.error):
            status, answer = 400, b""
        else:
            status, answer, spans = self._judge(scope["method"], scope["path"], headers, body)
        self._note(ReceivedRequest(scope["method"], scope["path"], headers, body, status), spans)
        await _answer(send, status, answer)

    def _judge(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes, list[ReceivedSpan]]:
        if path != TRACES_PATH:
            return 404, b"", []
        if method != "POST":
            return 405, b"", []
        if headers.get("content-type", "").split(";")[0].strip() != PROTOBUF:
            return 415, b"", []
        try:
            spans = decode_spans(body)
        except Exception:  # a body that is no ExportTraceServiceRequest: the exporter's bug
            return 400, b"", []
        if self.answer_status != 200:
            return self.answer_status, b"", []
        return 200, ExportTraceServiceResponse().SerializeToString(), spans


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROTOBUF.encode()),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def open_otlp_receiver() -> AsyncIterator[OtlpReceiver]:
    """A receiver serving on 127.0.0.1 (a free port) for the block."""
    receiver = OtlpReceiver()

    async def serve(
        *, task_status: trio.TaskStatus[BoundServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await serve_http(
            receiver, host="127.0.0.1", port=0, graceful_timeout=0.5, task_status=task_status
        )

    async with trio.open_nursery() as nursery:
        bound: BoundServer = await nursery.start(serve)
        receiver.url = f"http://127.0.0.1:{bound.port}"
        yield receiver
        nursery.cancel_scope.cancel()
