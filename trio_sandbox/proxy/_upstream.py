"""One upstream MCP server as the proxy sees it: a client session, its listings and its state.

An upstream either connects itself from its spec (:meth:`Upstream.serve_connection`, reconnecting
with backoff whenever the session breaks) or is driven from outside with :meth:`Upstream.attach`
and :meth:`Upstream.detach` (the sandbox does this across respawns). Calls wait a bounded time for
a session, and a call that was in flight when its session went away fails with an error naming
the upstream: it may or may not have run, so it is never retried behind the caller's back.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import trio

from ..mcp import (
    CallToolResult,
    JsonObject,
    McpError,
    Notification,
    Prompt,
    RequestContext,
    Resource,
    ResourceTemplate,
    Tool,
)
from ..mcp._client import McpClient, McpConnectionError, open_mcp_client

logger = logging.getLogger("trio_sandbox.proxy")


class UpstreamState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ERROR = "error"


class UpstreamUnavailable(Exception):
    """The upstream has no working session, or lost it while a call was in flight."""

    def __init__(self, upstream: str, reason: str) -> None:
        super().__init__(f"upstream {upstream!r} is unavailable: {reason}")
        self.upstream = upstream
        self.reason = reason


@attrs.frozen
class UpstreamStatus:
    """What the health monitor and ``status`` see of one upstream."""

    name: str
    state: UpstreamState
    last_error: str | None
    connected_since: float | None
    tools: int

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.state.value,
            "last_error": self.last_error,
            "connected_since": self.connected_since,
            "tools": self.tools,
        }


@attrs.frozen
class Listing:
    tools: tuple[Tool, ...] = ()
    prompts: tuple[Prompt, ...] = ()
    resources: tuple[Resource, ...] = ()
    templates: tuple[ResourceTemplate, ...] = ()


ClientOpener = Callable[
    [Callable[[Notification], Awaitable[None]]], AbstractAsyncContextManager[McpClient]
]


@attrs.define(eq=False)
class _Attachment:
    client: McpClient
    # Cancel scopes of the calls in flight on this session, cancelled when it goes away.
    calls: set[trio.CancelScope] = attrs.field(factory=set)
    lost_reason: str | None = None


@attrs.define(eq=False)
class Upstream:
    name: str
    prefix: str
    # How long a call waits for a session before failing (a respawning sandbox, a reconnect).
    call_wait: float = 10.0
    on_list_changed: Callable[[], Awaitable[None]] | None = None
    state: UpstreamState = UpstreamState.CONNECTING
    last_error: str | None = None
    connected_since: float | None = None
    listing: Listing | None = None
    _attachment: _Attachment | None = None
    _attached: trio.Event = attrs.field(factory=trio.Event)
    _broken: trio.Event = attrs.field(factory=trio.Event)

    @property
    def status(self) -> UpstreamStatus:
        tools = len(self.listing.tools) if self.listing is not None else 0
        return UpstreamStatus(self.name, self.state, self.last_error, self.connected_since, tools)

    @property
    def client(self) -> McpClient | None:
        return self._attachment.client if self._attachment is not None else None

    # --- driven from outside ------------------------------------------------------------------

    def attach(self, client: McpClient) -> None:
        """Route calls to ``client`` from now on."""
        self._attachment = _Attachment(client)
        self.state = UpstreamState.CONNECTED
        self.last_error = None
        self.connected_since = trio.current_time()
        self._broken = trio.Event()
        self._attached.set()

    def detach(self, reason: str) -> None:
        """The session is gone: fail the calls in flight on it, and make new calls wait."""
        attachment = self._attachment
        self._attachment = None
        self._attached = trio.Event()
        self.state = UpstreamState.ERROR
        self.last_error = reason
        self.connected_since = None
        if attachment is not None:
            attachment.lost_reason = reason
            for scope in attachment.calls:
                scope.cancel()

    def report_broken(self, reason: str) -> None:
        """A call found the session broken: ask whoever connects it to start over."""
        self.last_error = reason
        self._broken.set()

    async def wait_broken(self) -> None:
        await self._broken.wait()

    # --- self-connecting ----------------------------------------------------------------------

    async def serve_connection(
        self,
        open_client: ClientOpener,
        *,
        backoff: float = 0.1,
        backoff_max: float = 5.0,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Keep a session open, reconnecting with backoff; reports started after the first try."""
        delay = backoff
        reported = False
        while True:
            try:
                async with open_client(self._notification) as client:
                    self.attach(client)
                    delay = backoff
                    await self.refresh_listing(limit=self.call_wait)
                    if not reported:
                        reported = True
                        task_status.started()
                    await self._broken.wait()
                    self.detach(self.last_error or "the session broke")
            except (McpConnectionError, McpError, OSError) as exc:
                self.detach(str(exc))
                logger.warning("upstream %r: %s", self.name, exc)
            if not reported:
                reported = True
                task_status.started()
            await trio.sleep(delay)
            delay = min(delay * 2, backoff_max)
            self.state = UpstreamState.CONNECTING

    async def _notification(self, note: Notification) -> None:
        if note.method.endswith("/list_changed"):
            await self.refresh_listing(limit=self.call_wait)
            if self.on_list_changed is not None:
                await self.on_list_changed()

    # --- using the session --------------------------------------------------------------------

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[McpClient]:
        """The current session, waiting for one; a loss while inside becomes UpstreamUnavailable."""
        if self._attachment is None:
            with trio.move_on_after(self.call_wait):
                await self._attached.wait()
        attachment = self._attachment
        if attachment is None:
            raise UpstreamUnavailable(self.name, self.last_error or "not connected")
        with trio.CancelScope() as scope:
            attachment.calls.add(scope)
            try:
                yield attachment.client
            except McpConnectionError as exc:
                self.report_broken(str(exc))
                raise UpstreamUnavailable(self.name, str(exc)) from exc
            finally:
                attachment.calls.discard(scope)
        if scope.cancelled_caught:
            raise UpstreamUnavailable(
                self.name, f"{attachment.lost_reason}; the call may or may not have run"
            )

    async def refresh_listing(self, *, limit: float) -> None:
        """Fetch tools, prompts and resources; keeps the last listing when the upstream is slow."""
        client = self.client
        if client is None:
            self.listing = None
            return
        capabilities = client.server_capabilities
        listing: Listing | None = None
        with trio.move_on_after(limit) as deadline:
            try:
                tools = await client.list_tools() if "tools" in capabilities else []
                prompts = await client.list_prompts() if "prompts" in capabilities else []
                resources: list[Resource] = []
                templates: list[ResourceTemplate] = []
                if "resources" in capabilities:
                    resources = await client.list_resources()
                    templates = await client.list_resource_templates()
                listing = Listing(tuple(tools), tuple(prompts), tuple(resources), tuple(templates))
            except McpConnectionError as exc:
                self.report_broken(str(exc))
                self.last_error = f"listing failed: {exc}"
            except McpError as exc:
                self.last_error = f"listing failed: {exc.message}"
        if deadline.cancelled_caught:
            self.last_error = f"listing timed out after {limit:g} s"
        if listing is not None:
            self.listing = listing

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any],
        *,
        ctx: RequestContext | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> CallToolResult:
        """Call ``name`` upstream, relaying progress to the downstream request ``ctx``."""
        progress = None
        forwarded_meta = dict(meta or {})
        # The client makes its own progress token; ours is mapped back in the callback.
        if forwarded_meta.pop("progressToken", None) is not None and ctx is not None:
            progress = ctx.report_progress
        async with self._session() as client:
            return await client.call_tool(
                name, arguments, progress=progress, meta=forwarded_meta or None
            )

    async def request(self, method: str, params: JsonObject) -> JsonObject:
        async with self._session() as client:
            return await client.request(method, params)

    async def ping(self) -> None:
        async with self._session() as client:
            await client.ping()


def opener_for_url(
    url: str, *, ssl_context: Any = None, headers: Mapping[str, str] | None = None
) -> ClientOpener:
    def open_client(
        on_notification: Callable[[Notification], Awaitable[None]],
    ) -> AbstractAsyncContextManager[McpClient]:
        return open_mcp_client(
            url, ssl_context=ssl_context, headers=headers, on_notification=on_notification
        )

    return open_client
