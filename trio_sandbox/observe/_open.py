"""The audit log, the metrics and the traces as one setting and one resource:
:class:`ObserveSettings` and :func:`open_observer`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager

import attrs
import trio

from ..concurrency import exception_leaves, single_error
from ._audit import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES, open_audit_log
from ._errors import ObserveError
from ._listen import parse_listen_address
from ._observer import Observer, Sink


@attrs.frozen(kw_only=True)
class ObserveSettings:
    """``audit_log``: a path or ``-`` (standard output); ``metrics_listen``: ``HOST:PORT`` of
    the Prometheus endpoint; ``traces``: spans through the program's tracer provider."""

    audit_log: str | None = None
    audit_log_max_bytes: int = DEFAULT_MAX_BYTES
    audit_log_backups: int = DEFAULT_BACKUPS
    metrics_listen: str | None = None
    traces: bool = False


@asynccontextmanager
async def open_observer(settings: ObserveSettings) -> AsyncIterator[Observer]:
    """An :class:`Observer` with the sinks ``settings`` asks for, their files open and their
    servers listening (a bad path or address fails here, before anything else starts); closed
    when the block ends. With nothing asked for, an observer that observes nothing."""
    sinks: list[Sink] = []
    listen = None
    if settings.metrics_listen is not None:
        listen = parse_listen_address(settings.metrics_listen)
    with ExitStack() as files:
        if settings.audit_log is not None:
            audit = open_audit_log(
                settings.audit_log,
                max_bytes=settings.audit_log_max_bytes,
                backups=settings.audit_log_backups,
            )
            sinks.append(files.enter_context(audit))
        metrics = None
        if listen is not None:
            from ._metrics import Metrics  # prometheus-client, only for a program that serves it

            metrics = Metrics()
            sinks.append(metrics)
        tracing = None
        if settings.traces:
            # OpenTelemetry, only for a program that asks (ObserveError without the extra);
            # the spans go to the program's tracer provider (the CLI's: OTLP from OTEL_*).
            from ._tracing import OtelTracing

            tracing = OtelTracing()
        observer = Observer(sinks=sinks, tracing=tracing)
        with single_error():  # the block's own error comes out as itself
            async with trio.open_nursery() as nursery:
                if metrics is not None and listen is not None:
                    from ._metrics_http import serve_metrics

                    metrics.gauges = observer.read_gauges
                    host, port = listen
                    try:
                        bound = await nursery.start(serve_metrics, metrics, host, port)
                    except BaseException as exc:
                        bind_errors = [e for e in exception_leaves(exc) if isinstance(e, OSError)]
                        if not bind_errors:
                            raise
                        raise ObserveError(
                            f"metrics_listen {settings.metrics_listen}: cannot listen there:"
                            f" {bind_errors[0].strerror or bind_errors[0]}"
                        ) from None
                    observer.metrics_url = bound.url
                yield observer
                nursery.cancel_scope.cancel()
