"""What the proxy knows of an upstream: its state, its status, and its last listing."""

from __future__ import annotations

import enum

import attrs

from ..mcp import Prompt, Resource, ResourceTemplate, Tool


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
        }


@attrs.frozen
class Listing:
    tools: tuple[Tool, ...] = ()
    prompts: tuple[Prompt, ...] = ()
    resources: tuple[Resource, ...] = ()
    templates: tuple[ResourceTemplate, ...] = ()
