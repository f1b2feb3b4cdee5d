"""The root of every error a user of trio_sandbox can see.

It lives at the bottom of the house, beside the contract, because every layer raises errors a
user meets (a bad limit, an MCP error, a sandbox that failed), and each layer may import only
what is below it. Each layer keeps its own errors in one leaf module, deriving from this.
"""

from __future__ import annotations


class SandboxError(Exception):
    """Base of every error trio_sandbox raises for its users to catch."""
