"""trio_sandbox: run MCP tool servers in a sandbox, behind a mutual-TLS proxy.

The embedding API is re-exported here. It is loaded on first use, so that running one layer on
its own (``python -m trio_sandbox.tools`` inside the sandbox) does not import the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The base of every error a user can meet; the contract is standard library only, so this costs
# nothing at start-up.
from .contract import SandboxError as SandboxError

if TYPE_CHECKING:
    from .sandbox import Sandbox as Sandbox
    from .sandbox import SandboxConfig as SandboxConfig
    from .sandbox import SandboxFailed as SandboxFailed
    from .sandbox import SandboxHealth as SandboxHealth
    from .sandbox import SandboxMode as SandboxMode
    from .sandbox import SandboxRestarted as SandboxRestarted
    from .sandbox import SandboxSession as SandboxSession
    from .sandbox import SandboxStartError as SandboxStartError
    from .sandbox import SandboxUnavailable as SandboxUnavailable
    from .sandbox import open_sandbox as open_sandbox

__all__ = [
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "SandboxFailed",
    "SandboxHealth",
    "SandboxMode",
    "SandboxRestarted",
    "SandboxSession",
    "SandboxStartError",
    "SandboxUnavailable",
    "open_sandbox",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".sandbox", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
