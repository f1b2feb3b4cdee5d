"""The sandbox's health as a value; the supervisor publishes it in a
:class:`~trio_sandbox.concurrency.AsyncValue` that wakes waiters on every change."""

from __future__ import annotations

import attrs


@attrs.frozen
class SandboxHealth:
    """A snapshot; :meth:`Sandbox.wait_health_change` hands out the next one."""

    healthy: bool = False
    consecutive_ok: int = 0
    consecutive_failures: int = 0
    last_ok: float | None = None  # trio clock time of the last good probe
    last_error: str | None = None
    total_respawn_attempts: int = 0
    generation: int = 0  # how many sandboxes have been started so far
    respawning: bool = False  # between a sandbox's end and its successor's start

    def to_json(self) -> dict[str, object]:
        return {
            "healthy": self.healthy,
            "consecutive_ok": self.consecutive_ok,
            "consecutive_failures": self.consecutive_failures,
            "last_ok": self.last_ok,
            "last_error": self.last_error,
            "total_respawn_attempts": self.total_respawn_attempts,
            "generation": self.generation,
            "respawning": self.respawning,
        }
