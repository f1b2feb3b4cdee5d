"""The CLI's ``--traces``: an OpenTelemetry SDK pipeline made from the standard ``OTEL_*``
variables, exporting OTLP over HTTP.

Everything the SDK and its exporter read is theirs to read: the endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), headers, timeout,
compression, certificates, the sampler (``OTEL_TRACES_SAMPLER``), the limits,
``OTEL_SDK_DISABLED``; the resource is ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME``,
with ``trio-sandbox`` for a service the variables do not name. The batches
(``OTEL_BSP_SCHEDULE_DELAY``, ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``) are our processor's
(:mod:`._otel_export`). This module never reads the headers itself and never prints a
variable: the headers may hold a token.

This module imports only the standard library at first: the SDK (~40 ms) is imported when traces
are turned on, so the CLI can import this always.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from ..program import VERSION
from ._errors import ObserveError, otel_extra_missing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from ._tracing import OtelTracing

DEFAULT_SERVICE_NAME: Final = "trio-sandbox"
# What the OTLP exporter here speaks; the standard variables may ask for another.
PROTOCOL: Final = "http/protobuf"
_PROTOCOL_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def _check_exporter_choice() -> None:
    """The standard variables that choose an exporter or a protocol name only what this can
    do: OTLP over HTTP (a choice it cannot honour is an error, not silently another exporter)."""
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters not in ("", "otlp"):
        raise ObserveError(
            f"--traces exports OTLP only: OTEL_TRACES_EXPORTER={exporters!r} is not supported"
        )
    for variable in _PROTOCOL_VARIABLES:
        protocol = os.environ.get(variable, "").strip().lower()
        if protocol:
            if protocol != PROTOCOL:
                raise ObserveError(
                    f"--traces sends OTLP over HTTP ({PROTOCOL}): {variable}={protocol!r} is"
                    " not supported"
                )
            return  # the traces-specific variable wins over the general one


def configure_otel_from_environment() -> TracerProvider:
    """An SDK :class:`TracerProvider` configured by the ``OTEL_*`` variables, its spans sent
    OTLP/HTTP by the SDK's exporter in a child process (:mod:`._otel_export`). Its owner shuts
    it down (``provider.shutdown()``, which sends what is left);
    :func:`otel_tracing_from_environment` does that at the block's end.

    Not made the global provider (:func:`otel_provider_from_environment` can): a library must
    not take the global slot from an embedder. Raises :class:`ObserveError` when the
    ``otel`` extra is missing or the variables ask for an exporter this cannot be."""
    _check_exporter_choice()
    try:
        # The exporter runs in the child: here it must only be there.
        if importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http") is None:
            raise ImportError("opentelemetry.exporter.otlp.proto.http")
        from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource

        from ._otel_export import child_export_processor
        from ._otel_spans import ChildExportTracerProvider
    except ImportError as error:
        raise otel_extra_missing(error) from error
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        # The SDK's stand-in: the variables named no service, so it is this one.
        resource = resource.merge(
            Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME, SERVICE_VERSION: VERSION})
        )
    processor = child_export_processor(dict(resource.attributes))
    return ChildExportTracerProvider(processor, processor.take, resource=resource)


@contextmanager
def otel_provider_from_environment(*, set_global: bool = False) -> Iterator[TracerProvider]:
    """:func:`configure_otel_from_environment`'s provider for the block; at its end the
    provider sends the spans still queued and shuts down. That blocks the thread until they are
    sent, or for the batch processor's bound (30 s) when the collector does not answer: use it
    around ``trio.run``, not inside it.

    ``set_global``: make it the process's global provider for the block, so that an
    :class:`OtelTracing` made without a provider (and any other instrumentation) reports to it;
    the global provider can be set once per process, and :class:`ObserveError` says so when it
    was set before."""
    provider = configure_otel_from_environment()
    try:
        if set_global:
            from opentelemetry import trace

            trace.set_tracer_provider(provider)  # a second setting is ignored, with a log line
            if trace.get_tracer_provider() is not provider:
                raise ObserveError(
                    "--traces: this process already has a global OpenTelemetry tracer provider"
                )
        yield provider
    finally:
        provider.shutdown()


@contextmanager
def otel_tracing_from_environment() -> Iterator[OtelTracing]:
    """:class:`OtelTracing` on the provider of :func:`otel_provider_from_environment` (not the
    global one), shut down at the block's end as that says."""
    from ._tracing import OtelTracing  # first: without the API, nothing is started

    with otel_provider_from_environment() as provider:
        yield OtelTracing(provider)
