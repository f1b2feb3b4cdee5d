"""The CLI's errors."""

from __future__ import annotations

from ..contract import SandboxError


class UsageError(SandboxError):
    """A bad option or config value; the CLI prints it and exits with status 2."""
