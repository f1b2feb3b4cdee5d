"""The TLS layer's errors: a CA block the tool server printed that cannot be read."""

from __future__ import annotations

from ..contract import SandboxError


class CaBlockError(SandboxError, ValueError):
    """The CA block is missing, unfinished, empty, nested or does not hold a certificate."""
