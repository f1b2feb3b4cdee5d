"""What the agent did: the audit log, Prometheus metrics and OpenTelemetry traces.

The proxy and the sandbox tell one :class:`Observer` what happens (calls, a sandbox's life, the
sandbox's connections); it redacts, then hands each record to its sinks (:class:`AuditLog`,
:class:`Metrics`) and makes spans (:class:`OtelTracing`, with the ``otel`` extra).

Importing the package imports neither prometheus-client nor OpenTelemetry: :class:`Metrics` and
:func:`serve_metrics` load on first use (a proxy without metrics never pays for them), and so does
:class:`OtelTracing` (importing the OpenTelemetry API, or raising :class:`ObserveError` without
the ``otel`` extra); :func:`otel_tracing_from_environment` imports the SDK when it is called.
"""

from typing import TYPE_CHECKING

from ..program import lazy_exports
from ._audit import AuditLog as AuditLog
from ._audit import open_audit_log as open_audit_log
from ._errors import AuditLogError as AuditLogError
from ._errors import ObserveError as ObserveError
from ._listen import parse_listen_address as parse_listen_address
from ._observer import CallObservation as CallObservation
from ._observer import CallSpan as CallSpan
from ._observer import Observer as Observer
from ._observer import Sink as Sink
from ._observer import Tracing as Tracing
from ._observer import session_digest as session_digest
from ._open import ObserveSettings as ObserveSettings
from ._open import open_observer as open_observer
from ._otel_setup import configure_otel_from_environment as configure_otel_from_environment
from ._otel_setup import otel_provider_from_environment as otel_provider_from_environment
from ._otel_setup import otel_tracing_from_environment as otel_tracing_from_environment
from ._records import AUDIT_SCHEMA_VERSION as AUDIT_SCHEMA_VERSION
from ._records import CallKind as CallKind
from ._records import CallRecord as CallRecord
from ._records import EgressRecord as EgressRecord
from ._records import EgressVerdict as EgressVerdict
from ._records import Failure as Failure
from ._records import LifecyclePhase as LifecyclePhase
from ._records import LifecycleRecord as LifecycleRecord
from ._records import Outcome as Outcome
from ._records import Record as Record
from ._records import SandboxGauges as SandboxGauges

if TYPE_CHECKING:
    from ._metrics import Metrics as Metrics
    from ._metrics_http import METRICS_PATH as METRICS_PATH
    from ._metrics_http import serve_metrics as serve_metrics
    from ._otel_setup import configure_otel_from_environment as configure_otel_from_environment
    from ._otel_setup import otel_provider_from_environment as otel_provider_from_environment
    from ._otel_setup import otel_tracing_from_environment as otel_tracing_from_environment
    from ._tracing import OtelCallSpan as OtelCallSpan
    from ._tracing import OtelTracing as OtelTracing

# The metrics and the OpenTelemetry API, loaded on first use: name -> module.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Metrics": "._metrics",
        "METRICS_PATH": "._metrics_http",
        "serve_metrics": "._metrics_http",
        "OtelCallSpan": "._tracing",
        "configure_otel_from_environment": "._otel_setup",
        "otel_provider_from_environment": "._otel_setup",
        "otel_tracing_from_environment": "._otel_setup",
        "OtelTracing": "._tracing",
    },
)
