"""The observe layer's errors."""

from __future__ import annotations

from ..contract import SandboxError


class ObserveError(SandboxError, ValueError):
    """A setting of the audit log, the metrics or the traces that cannot be used."""


class AuditLogError(ObserveError):
    """The audit log cannot be opened (the path names what and why)."""


def otel_extra_missing(error: ImportError) -> ObserveError:
    """What turning traces on says when the ``otel`` extra is not installed (``error`` is the
    failed import, named so that a half-installed extra shows which part is missing)."""
    return ObserveError(
        "traces need the otel extra: pip install 'trio_sandbox[otel]'"
        f" (cannot import {error.name or 'opentelemetry'})"
    )
