"""The proxy's MCP face: one server whose tools, prompts and resources are its upstreams'.

Names are prefixed per upstream (:mod:`._names`); listings fan out to every upstream at once, each
bounded by its own timeout, and calls are routed to the upstream that listed the name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Any, Final

import attrs
import trio

from ..mcp import (
    INVALID_PARAMS,
    RESOURCE_NOT_FOUND,
    CallToolResult,
    JsonObject,
    McpError,
    McpServer,
    Prompt,
    Request,
    RequestContext,
    Tool,
)
from ..mcp._server import paginate
from ._names import NameCollisionError, Route, build_routes, exposed_name
from ._upstream import Upstream, UpstreamUnavailable

logger = logging.getLogger("trio_sandbox.proxy")

_LIST_METHODS: Final = frozenset(
    {"tools/list", "prompts/list", "resources/list", "resources/templates/list"}
)


@attrs.frozen
class _Snapshot:
    """One merged view of every upstream's listings, with the routes it implies."""

    tools: Sequence[JsonObject] = ()
    prompts: Sequence[JsonObject] = ()
    resources: Sequence[JsonObject] = ()
    templates: Sequence[JsonObject] = ()
    tool_routes: dict[str, Route] = attrs.field(factory=dict)
    prompt_routes: dict[str, Route] = attrs.field(factory=dict)
    resource_owners: dict[str, str] = attrs.field(factory=dict)
    collisions: Sequence[NameCollisionError] = ()


@attrs.define(eq=False)
class ProxyServer(McpServer):
    """An :class:`McpServer` whose offerings come from upstream MCP servers."""

    upstreams: dict[str, Upstream] = attrs.field(factory=dict)
    list_timeout: float = 10.0
    _snapshot: _Snapshot = attrs.field(factory=_Snapshot)

    def capabilities(self) -> JsonObject:
        return {
            "tools": {"listChanged": True},
            "prompts": {"listChanged": True},
            "resources": {"listChanged": True},
            "logging": {},
        }

    @property
    def collisions(self) -> Sequence[NameCollisionError]:
        return self._snapshot.collisions

    async def refresh(self) -> None:
        """Ask every upstream for its listings at once and rebuild the merged view and routes."""
        ordered = list(self.upstreams.values())
        async with trio.open_nursery() as nursery:
            for upstream in ordered:
                nursery.start_soon(partial(upstream.refresh_listing, limit=self.list_timeout))
        self._snapshot = _merge(ordered)
        for collision in self._snapshot.collisions:
            logger.warning("%s", collision)

    async def handle_request(self, request: Request, ctx: RequestContext) -> JsonObject:
        method = request.method
        params = request.params or {}
        if method in _LIST_METHODS:
            if params.get("cursor") is None:
                await self.refresh()
            return self._page(method, params)
        if method == "tools/call":
            return (await self._call_tool(params, ctx)).to_json()
        if method == "prompts/get":
            route = self._route(self._snapshot.prompt_routes, params, "prompt")
            upstream = self.upstreams[route.upstream]
            forwarded = {**params, "name": route.name}
            return await upstream.request("prompts/get", forwarded)
        if method == "resources/read":
            return await self._read_upstream_resource(params)
        if method in ("resources/subscribe", "resources/unsubscribe"):
            raise McpError(INVALID_PARAMS, "the proxy does not relay resource subscriptions")
        return await super().handle_request(request, ctx)

    def _page(self, method: str, params: JsonObject) -> JsonObject:
        snapshot = self._snapshot
        items, key = {
            "tools/list": (snapshot.tools, "tools"),
            "prompts/list": (snapshot.prompts, "prompts"),
            "resources/list": (snapshot.resources, "resources"),
            "resources/templates/list": (snapshot.templates, "resourceTemplates"),
        }[method]
        return paginate(items, key, params, self.page_size)

    def _route(self, routes: dict[str, Route], params: JsonObject, kind: str) -> Route:
        name = params.get("name")
        if not isinstance(name, str):
            raise McpError(INVALID_PARAMS, f"missing or invalid parameter 'name' of the {kind}")
        route = routes.get(name)
        if route is None:
            raise McpError(INVALID_PARAMS, f"unknown {kind}: {name!r}")
        return route

    async def _call_tool(self, params: JsonObject, ctx: RequestContext) -> CallToolResult:
        name = params.get("name")
        if isinstance(name, str) and name not in self._snapshot.tool_routes:
            # A client may call a tool it learnt of earlier, before we listed anything.
            await self.refresh()
        route = self._route(self._snapshot.tool_routes, params, "tool")
        upstream = self.upstreams[route.upstream]
        arguments = params.get("arguments")
        meta = params.get("_meta")
        try:
            return await upstream.call_tool(
                route.name,
                arguments if isinstance(arguments, dict) else {},
                ctx=ctx,
                meta=meta if isinstance(meta, dict) else None,
            )
        except UpstreamUnavailable as exc:
            # Never an empty success: say which upstream failed and why.
            return CallToolResult.error(str(exc))

    async def _read_upstream_resource(self, params: JsonObject) -> JsonObject:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise McpError(INVALID_PARAMS, "missing or invalid parameter 'uri'")
        owner = self._snapshot.resource_owners.get(uri)
        candidates = [owner] if owner is not None else list(self.upstreams)
        for name in candidates:
            upstream = self.upstreams[name]
            try:
                return await upstream.request("resources/read", params)
            except McpError as exc:
                if owner is not None:
                    raise
                if exc.code not in (RESOURCE_NOT_FOUND, INVALID_PARAMS):
                    raise
            except UpstreamUnavailable:
                if owner is not None:
                    raise
        raise McpError(RESOURCE_NOT_FOUND, f"resource not found: {uri}", {"uri": uri})


def _merge(upstreams: Sequence[Upstream]) -> _Snapshot:
    connected = [u for u in upstreams if u.listing is not None]
    tool_routes, tool_collisions = build_routes(
        "tool",
        ((u.name, u.prefix, [t.name for t in u.listing.tools]) for u in connected),  # type: ignore[union-attr]
    )
    prompt_routes, prompt_collisions = build_routes(
        "prompt",
        ((u.name, u.prefix, [p.name for p in u.listing.prompts]) for u in connected),  # type: ignore[union-attr]
    )
    tools: list[JsonObject] = []
    prompts: list[JsonObject] = []
    resources: list[JsonObject] = []
    templates: list[JsonObject] = []
    resource_owners: dict[str, str] = {}
    for upstream in connected:
        listing = upstream.listing
        assert listing is not None
        for tool in listing.tools:
            exposed = exposed_name(upstream.prefix, tool.name)
            if tool_routes.get(exposed) == Route(upstream.name, tool.name):
                tools.append(_renamed(tool, exposed))
        for prompt in listing.prompts:
            exposed = exposed_name(upstream.prefix, prompt.name)
            if prompt_routes.get(exposed) == Route(upstream.name, prompt.name):
                prompts.append(_renamed(prompt, exposed))
        for resource in listing.resources:
            if resource.uri not in resource_owners:
                resource_owners[resource.uri] = upstream.name
                resources.append(resource.to_json())
        templates.extend(template.to_json() for template in listing.templates)
    # Deterministic order whatever order the upstreams answered in.
    tools.sort(key=lambda item: item["name"])
    prompts.sort(key=lambda item: item["name"])
    return _Snapshot(
        tools=tools,
        prompts=prompts,
        resources=resources,
        templates=templates,
        tool_routes=tool_routes,
        prompt_routes=prompt_routes,
        resource_owners=resource_owners,
        collisions=[*tool_collisions, *prompt_collisions],
    )


def _renamed(item: Tool | Prompt, exposed: str) -> JsonObject:
    raw: dict[str, Any] = item.to_json()
    raw["name"] = exposed
    return raw
