"""What can go wrong with a sandbox, in words a user can act on."""

from __future__ import annotations


class SandboxStartError(Exception):
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


class SandboxFailed(Exception):
    """The persistent sandbox kept failing and will not be respawned again."""


class SandboxRestarted(Exception):
    """A call was in flight on a sandbox that died or was restarted; it may not have completed."""


class SandboxUnavailable(Exception):
    """No sandbox was serving within ``respawn_wait``; the call was not run."""
