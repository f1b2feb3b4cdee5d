"""What the proxy knows of an upstream: its state, its status, and its last listing."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import attrs

from ..mcp import Prompt, Resource, ResourceTemplate, Tool

if TYPE_CHECKING:
    # Only named here: the oauth package (httpx, authlib) loads when an upstream uses it.
    from ..oauth import AuthStatus


class UpstreamState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ERROR = "error"


@attrs.frozen
class UpstreamStatus:
    """What the health monitor and ``status`` see of one upstream."""

    name: str
    state: UpstreamState
    last_error: str | None
    connected_since: float | None
    tools: int
    protocol_version: str | None = None
    collisions: tuple[str, ...] = ()
    # An OAuth upstream's authorization (logged in, expired, needs a login, refresh failing).
    auth: AuthStatus | None = None

    @property
    def connected(self) -> bool:
        return self.state is UpstreamState.CONNECTED

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.state.value,
            "connected": self.connected,
            "last_error": self.last_error,
            "connected_since": self.connected_since,
            "tools": self.tools,
            "protocol_version": self.protocol_version,
            "collisions": list(self.collisions),
            **({} if self.auth is None else {"auth": auth_status_json(self.auth)}),
        }


def auth_status_json(status: AuthStatus) -> dict[str, object]:
    """An authorization's status as ``status`` and ``auth status`` print it (no secret in it)."""
    return {
        "state": status.state.value,
        "reason": status.reason,
        "expires_at": status.expires_at,
        "next_retry_at": status.next_retry_at,
    }


@attrs.frozen
class Listing:
    tools: tuple[Tool, ...] = ()
    prompts: tuple[Prompt, ...] = ()
    resources: tuple[Resource, ...] = ()
    templates: tuple[ResourceTemplate, ...] = ()
