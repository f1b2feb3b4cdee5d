"""The sandbox as one of the proxy's upstreams: calls across respawns, and per-session sandboxes.

The proxy's :class:`Upstream` already makes calls wait (``call_wait``) while no session is
attached and fails the calls in flight when the session is detached. This subclass only says
what happened in the sandbox's own words - a call lost in flight was lost because *the sandbox
restarted*, a call that waited in vain waited for a *respawn* - and marks such tool results so
that :meth:`Sandbox.call_tool` can raise instead of returning them.

In ephemeral mode it also routes each downstream MCP session (one with a session id) to a
sandbox of its own, through :attr:`SandboxUpstream.route`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import attrs

from ..mcp import CallToolResult, JsonObject, RequestContext
from ..proxy import Upstream, UpstreamUnavailable

logger = logging.getLogger("trio_sandbox.sandbox")

# In the ``_meta`` of a tool result the proxy made up because the sandbox went away.
RESTARTED_META_KEY: Final = "io.github.trio-sandbox/sandboxRestarted"
UNAVAILABLE_META_KEY: Final = "io.github.trio-sandbox/sandboxUnavailable"

# Picks the upstream that serves a request: the sandbox of its downstream session, or None.
SessionRouter = Callable[[RequestContext], Awaitable["SandboxUpstream | None"]]


@attrs.define(eq=False)
class SandboxUpstream(Upstream):
    route: SessionRouter | None = None
    # Set when this (per-session) sandbox could not start or ended: calls fail at once.
    failure: str | None = None
    calls_in_flight: int = 0
    # Bumped on every attach: tells a call that lost its session from one that never had one.
    attached_generation: int = 0

    def source_key(self, ctx: RequestContext | None) -> str:
        """In ephemeral mode a session's sandbox is a source of its own: what one session's
        sandbox printed is never restored into another's."""
        if self.route is not None and ctx is not None and ctx.session.session_id is not None:
            return f"{self.name} session {ctx.session.session_id}"
        return self.name

    def attach(self, client: object) -> None:
        self.attached_generation += 1
        super().attach(client)  # type: ignore[arg-type]

    async def forward(
        self, method: str, params: JsonObject, ctx: RequestContext | None = None
    ) -> JsonObject:
        target: SandboxUpstream = self
        if self.route is not None and ctx is not None:
            target = await self.route(ctx) or self
        return await target._forward_here(method, params, ctx)

    async def _forward_here(
        self, method: str, params: JsonObject, ctx: RequestContext | None
    ) -> JsonObject:
        had_session = self.client is not None
        generation = self.attached_generation
        self.calls_in_flight += 1
        try:
            if self.failure is not None:
                raise UpstreamUnavailable(self.name, self.failure)
            return await Upstream.forward(self, method, params, ctx)
        except UpstreamUnavailable as exc:
            lost_in_flight = had_session or self.attached_generation != generation
            if self.failure is not None:
                message = f"{self.failure}; the call was not run"
                key = UNAVAILABLE_META_KEY
            elif lost_in_flight:
                message = (
                    f"the sandbox restarted while this call was in flight ({exc.reason}); "
                    "it may or may not have run, and it was not retried"
                )
                key = RESTARTED_META_KEY
            else:
                message = (
                    f"the sandbox is restarting and was not back within {self.call_wait:g} s "
                    f"({exc.reason}); the call was not run"
                )
                key = UNAVAILABLE_META_KEY
            logger.warning("%s %r failed: %s", method, params.get("name") or "", message)
            if method == "tools/call":
                result = CallToolResult.error(message).to_json()
                result["_meta"] = {key: True}
                return result
            raise UpstreamUnavailable(self.name, message) from exc
        finally:
            self.calls_in_flight -= 1
