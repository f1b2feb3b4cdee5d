"""What can go wrong with a sandbox, in words a user can act on.

Every error here derives from :class:`~trio_sandbox.contract.SandboxError`, which the package
root re-exports: one ``except`` catches whatever ``open_sandbox`` and ``Sandbox`` raise.
"""

from __future__ import annotations

from ..contract import SandboxError
from ..mcp import INVALID_PARAMS, McpError


class SandboxStartError(SandboxError):
    """A sandbox could not be started; says at which step, with the warden's status and stderr."""

    def __init__(
        self, step: str, reason: str, *, exit_status: int | None = None, stderr_tail: str = ""
    ) -> None:
        self.step = step
        self.reason = reason
        self.exit_status = exit_status
        self.stderr_tail = stderr_tail
        message = f"sandbox start failed at step {step!r}: {reason}"
        if exit_status is not None:
            message += f" (warden exit status {exit_status})"
        if stderr_tail:
            message += f"\n--- last warden stderr ---\n{stderr_tail.rstrip()}"
        super().__init__(message)


class WardenExited(SandboxError):
    """The sandbox ended on its own after it had started."""

    def __init__(self, status: int | None, stderr_tail: str = "") -> None:
        what = f"status {status}" if status is not None else "no status"
        super().__init__(f"the warden exited with {what}")
        self.status = status
        self.stderr_tail = stderr_tail


class SandboxFailed(SandboxError):
    """The persistent sandbox kept failing and will not be respawned again."""


class SandboxRestarted(SandboxError):
    """A call was in flight on a sandbox that died or was restarted; it may not have completed."""


class SandboxUnavailable(SandboxError):
    """No sandbox was serving within ``respawn_wait``; the call was not run."""


class SandboxHandleError(McpError):
    """A sandbox handle (``_meta`` ``io.github.trio-sandbox/sandbox``) that is not one the proxy
    issued: malformed, or not well-formed at all. The request is refused as invalid params
    (JSON-RPC -32602, ``data.sandboxHandle`` says why); no sandbox is made for it."""

    reason = "malformed"

    def __init__(self, message: str) -> None:
        super().__init__(INVALID_PARAMS, message, {"sandboxHandle": self.reason})


class SandboxHandleRefused(SandboxHandleError):
    """A well-formed sandbox handle that the proxy did not issue to the client presenting it (a
    handle of another identity, stolen or guessed): refused, and no sandbox is made for it."""

    reason = "refused"
