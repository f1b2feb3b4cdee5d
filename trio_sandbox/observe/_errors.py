"""The observe layer's errors."""

from __future__ import annotations

from ..contract import SandboxError


class ObserveError(SandboxError, ValueError):
    """A setting of the audit log, the metrics or the traces that cannot be used."""


class AuditLogError(ObserveError):
    """The audit log cannot be opened (the path names what and why)."""
