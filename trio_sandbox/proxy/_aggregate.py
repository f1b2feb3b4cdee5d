"""The proxy's MCP face: an :class:`McpServer` whose tools, prompts and resources are its
upstreams'.

The proxy does not subclass the server: it routes the methods it answers itself (listings,
calls, reads, subscriptions, completions) through the server's method table and leaves the rest
(the handshake, ping, logging, the proxy's own resources) to the server's built-in handlers.
Names are prefixed per upstream (:mod:`._exposed_names`); listings fan out to every upstream at
once, each bounded by its own timeout, and calls are routed to the upstream that listed the name.
Lists are paginated with the proxy's own cursors over its merged view, whatever the upstreams'
page sizes.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Final, TypeAlias

import attrs
import trio

from ..concurrency import AsyncValue
from ..mcp import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    RESOURCE_NOT_FOUND,
    CallToolResult,
    Implementation,
    JsonObject,
    McpError,
    McpServer,
    Notification,
    RequestContext,
    Tool,
)
from ..mcp.lowlevel import LIST_RESULT_KEYS, MethodHandler, match_uri_template, paginate
from ..observe import CallKind, CallObservation, Failure, Observer, Outcome
from ._errors import NameCollisionError, UpstreamNeedsLogin, UpstreamUnavailable
from ._exposed_names import SEPARATOR, Route, build_routes, exposed_name
from ._output_guard import OUTPUT_URI_PREFIX, OutputGuard, Source
from ._upstream import Upstream

if TYPE_CHECKING:
    from ..oauth import LoginRequired

logger = logging.getLogger("trio_sandbox.proxy")

# A request handler told the call's observation, if any (it sets where the call went).
RoutedCall: TypeAlias = Callable[
    [JsonObject, RequestContext, CallObservation | None], Awaitable[JsonObject]
]

_CAPABILITIES: Final[JsonObject] = {
    "tools": {"listChanged": True},
    "prompts": {"listChanged": True},
    "resources": {"subscribe": True, "listChanged": True},
    "completions": {},
    "logging": {},
}
_LISTEN_OFFER: Final = frozenset(
    {"toolsListChanged", "promptsListChanged", "resourcesListChanged", "resourceSubscriptions"}
)


@attrs.frozen
class _LoginWait:
    name: str
    login_required: LoginRequired
    unserved_result: Callable[[UpstreamUnavailable], CallToolResult]


@attrs.frozen
class _Snapshot:
    """One merged view of every upstream's listings, with the routes it implies."""

    # The tools under their exposed names, as objects (what embedders read) and as listed.
    tool_objects: Sequence[Tool] = ()
    tools: Sequence[JsonObject] = ()
    prompts: Sequence[JsonObject] = ()
    resources: Sequence[JsonObject] = ()
    templates: Sequence[JsonObject] = ()
    tool_routes: Mapping[str, Route] = attrs.field(factory=dict)
    prompt_routes: Mapping[str, Route] = attrs.field(factory=dict)
    resource_owners: Mapping[str, str] = attrs.field(factory=dict)
    template_owners: Sequence[tuple[str, str]] = ()  # (uriTemplate, upstream)
    # Keyed by (kind, exposed name): names offered by neither of two claimants.
    collisions: Mapping[tuple[str, str], NameCollisionError] = attrs.field(factory=dict)

    def items(self, key: str) -> Sequence[JsonObject]:
        return {
            "tools": self.tools,
            "prompts": self.prompts,
            "resources": self.resources,
            "resourceTemplates": self.templates,
        }[key]


@attrs.define(eq=False)
class ProxyServer:
    """The aggregation behind the proxy's face; ``mcp`` is the server that transports serve."""

    info: Implementation
    page_size: int = 100
    list_timeout: float = 10.0
    upstreams: dict[str, Upstream] = attrs.field(factory=dict)
    # Redaction and large outputs, between every upstream and the clients.
    guard: OutputGuard = attrs.field(factory=OutputGuard)
    mcp: McpServer = attrs.field(init=False)
    _snapshot: _Snapshot = attrs.field(factory=_Snapshot)
    # How many times an upstream said its listing may have changed (serve_list_changes waits).
    _listing_changes: AsyncValue[int] = attrs.field(factory=lambda: AsyncValue(0))
    _read_own_resource: MethodHandler = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.mcp = McpServer(self.info, page_size=self.page_size)
        own_read = self.mcp.handler_for("resources/read")
        assert own_read is not None
        self._read_own_resource = own_read
        for method in LIST_RESULT_KEYS:
            self.mcp.route(method, partial(self._list, method))
        self.mcp.route("tools/call", partial(self._observing, CallKind.TOOL_CALL, self._route_call))
        self.mcp.route(
            "prompts/get", partial(self._observing, CallKind.PROMPT_GET, self._route_prompt)
        )
        self.mcp.route(
            "resources/read", partial(self._observing, CallKind.RESOURCE_READ, self._route_read)
        )
        self.mcp.route("resources/subscribe", partial(self._subscription, "resources/subscribe"))
        self.mcp.route(
            "resources/unsubscribe", partial(self._subscription, "resources/unsubscribe")
        )
        self.mcp.route("completion/complete", self._complete)
        self.mcp.set_capabilities(lambda: dict(_CAPABILITIES))
        self.mcp.set_listen_offer(lambda: _LISTEN_OFFER)
        # Everything the proxy sends a client is redacted there, once, whatever its channel.
        self.mcp.set_outgoing_filter(self.guard.outgoing)

    @property
    def observer(self) -> Observer:
        """What the audit log, the metrics and the traces are told (the guard's: it redacts)."""
        return self.guard.observer

    @property
    def tools(self) -> Sequence[Tool]:
        """The tools as the last listing showed them to clients (the same objects until the
        listing changes)."""
        return self._snapshot.tool_objects

    @property
    def collisions(self) -> Sequence[NameCollisionError]:
        return list(self._snapshot.collisions.values())

    # --- the merged view ----------------------------------------------------------------------

    def add_upstream(self, upstream: Upstream) -> None:
        if upstream.name in self.upstreams:
            raise ValueError(f"two upstreams are named {upstream.name!r}")
        upstream.on_listing_changed = self._signal_listing_changed
        upstream.on_unrelated_notification = self._relay_unrelated
        self.upstreams[upstream.name] = upstream

    def _signal_listing_changed(self) -> None:
        self._listing_changes.value += 1

    async def refresh(self, *, only_stale: bool = False) -> None:
        """Ask upstreams for their listings at once (each bounded) and rebuild the merged view."""
        async with trio.open_nursery() as nursery:
            for upstream in self.upstreams.values():
                if upstream.listing_stale or not only_stale:
                    nursery.start_soon(partial(upstream.refresh_listing, limit=self.list_timeout))
        self.remerge()

    def remerge(self) -> None:
        merged = _merge(list(self.upstreams.values()))
        if merged != self._snapshot:
            # Otherwise the last view stays, its objects with it: the same until it changes.
            self._snapshot = merged
        for upstream in self.upstreams.values():
            upstream.collisions = tuple(
                str(c) for c in self._snapshot.collisions.values() if upstream.name in c.upstreams
            )
        for collision in self._snapshot.collisions.values():
            logger.warning("%s", collision)

    async def serve_list_changes(self) -> None:
        """Refresh after an upstream says its lists changed (or reconnected), and tell clients."""
        handled = self._listing_changes.value
        while True:
            handled = await self._listing_changes.wait_value(partial(operator.ne, handled))
            before = self._snapshot
            await self.refresh(only_stale=True)
            after = self._snapshot
            for kind, key in (
                ("tools", "tools"),
                ("prompts", "prompts"),
                ("resources", "resources"),
            ):
                if before.items(key) != after.items(key):
                    await self.mcp.notify_list_changed(kind)

    async def _relay_unrelated(self, note: Notification) -> None:
        params = note.params or {}
        if note.method == "notifications/resources/updated":
            uri = params.get("uri")
            if isinstance(uri, str):
                await self.mcp.notify_resource_updated(uri)
            return
        if note.method == "notifications/message":
            for session in self.mcp.sessions:
                await session.send_standalone(note)

    # --- requests -----------------------------------------------------------------------------

    async def _list(self, method: str, params: JsonObject, ctx: RequestContext) -> JsonObject:
        if params.get("cursor") is None:
            await self.refresh()
        key = LIST_RESULT_KEYS[method]
        items = self._snapshot.items(key)
        if key == "resources" and self.mcp.resources:
            # The proxy's own resources (the sandbox's status) come first.
            items = [*(resource.to_json() for resource in self.mcp.resources), *items]
        return paginate(items, key, params, self.page_size)

    async def _route_prompt(
        self, params: JsonObject, ctx: RequestContext, observation: CallObservation | None
    ) -> JsonObject:
        route = self._route(self._snapshot.prompt_routes, params, "prompt")
        self._attribute(ctx, route.upstream)
        forwarded = {**params, "name": route.name}
        return await self._forward(route.upstream, "prompts/get", forwarded, ctx, observation)

    async def _forward(
        self,
        name: str,
        method: str,
        params: JsonObject,
        ctx: RequestContext,
        observation: CallObservation | None,
    ) -> JsonObject:
        """``method`` to the upstream ``name``; an observed call learns where it went, and the
        upstream gets the call's trace."""
        upstream = self.upstreams[name]
        if observation is None:
            return await upstream.forward(method, params, ctx)
        observation.upstream = name
        observation.generation = upstream.generation
        _carry_trace(params, observation)
        with observation.child("upstream"):
            return await upstream.forward(method, params, ctx)

    def _attribute(self, ctx: RequestContext, upstream: str, tool: str | None = None) -> None:
        """What ``ctx``'s request sends its client from now on comes from ``upstream``."""
        owner = self.upstreams[upstream]
        self.guard.attribute(ctx, Source(owner.source_key(ctx), owner.redact, tool))

    def _route(self, routes: Mapping[str, Route], params: JsonObject, kind: str) -> Route:
        name = params.get("name")
        if not isinstance(name, str):
            raise McpError(INVALID_PARAMS, f"missing or invalid parameter 'name' of the {kind}")
        route = routes.get(name)
        if route is None:
            collision = self._snapshot.collisions.get((kind, name))
            if collision is not None:
                raise McpError(INVALID_PARAMS, str(collision))
            raise McpError(INVALID_PARAMS, f"unknown {kind}: {name!r}")
        return route

    async def _route_call(
        self, params: JsonObject, ctx: RequestContext, observation: CallObservation | None
    ) -> JsonObject:
        name = params.get("name")
        if isinstance(name, str) and name not in self._snapshot.tool_routes:
            # A client may call a tool it learnt of earlier, before we listed anything.
            await self.refresh()
        if isinstance(name, str) and name not in self._snapshot.tool_routes:
            waiting = self._waiting_for_login(name)
            if waiting is not None:
                # Its tools were never listed: the call is its all the same, by its prefix.
                error = UpstreamNeedsLogin(waiting.name, waiting.login_required.reason)
                logger.warning("tools/call %r failed: %s", name, error)
                if observation is not None:
                    observation.upstream = waiting.name
                    observation.failure = Failure("UpstreamNeedsLogin", error.reason)
                return waiting.unserved_result(error).to_json()
        route = self._route(self._snapshot.tool_routes, params, "tool")
        upstream = self.upstreams[route.upstream]
        self._attribute(ctx, route.upstream, route.name)
        arguments = params.get("arguments") or {}
        if isinstance(arguments, dict):
            # Only what this upstream itself showed: another's secrets stay placeholders.
            arguments = self.guard.restore_arguments(arguments, upstream.source_key(ctx))
        forwarded = {**params, "name": route.name, "arguments": arguments}
        try:
            return await self._forward(route.upstream, "tools/call", forwarded, ctx, observation)
        except UpstreamUnavailable as exc:
            # Never an empty success: the upstream's own error result (the sandbox's is marked
            # with whether the call may have run, for its clients).
            logger.warning("tools/call %r failed: %s", params.get("name"), exc)
            if observation is not None:
                observation.failure = Failure(
                    "UpstreamUnavailable", f"{exc.unserved.value}: {exc.reason}"
                )
            return upstream.unserved_result(exc).to_json()

    def _waiting_for_login(self, name: str) -> _LoginWait | None:
        """The upstream that needs a login and never listed its tools, whose prefix ``name``
        has, if any."""
        for upstream in self.upstreams.values():
            login = upstream.login_required
            if (
                login is not None
                and upstream.listing is None
                and upstream.prefix
                and name.startswith(f"{upstream.prefix}{SEPARATOR}")
            ):
                return _LoginWait(upstream.name, login, upstream.unserved_result)
        return None

    async def _observing(
        self, kind: CallKind, route: RoutedCall, params: JsonObject, ctx: RequestContext
    ) -> JsonObject:
        """``route`` the request, observed as one call of ``kind`` when something observes."""
        name = params.get("uri" if kind is CallKind.RESOURCE_READ else "name")
        arguments = params.get("arguments") if kind is not CallKind.RESOURCE_READ else None
        identity = ctx.client_identity
        traceparent = ctx.meta.get("traceparent")
        observation = self.observer.start_call(
            kind,
            name if isinstance(name, str) else "",
            upstream=None,
            client=identity.key if identity is not None else None,
            session_id=ctx.session.session_id,
            arguments=arguments if isinstance(arguments, dict) else None,
            traceparent=traceparent if isinstance(traceparent, str) else None,
        )
        if observation is None:
            return await route(params, ctx, None)
        self.guard.observe(ctx, observation)
        return await _finishing(observation, route(params, ctx, observation))

    def _owner_of(self, uri: str) -> str | None:
        owner = self._snapshot.resource_owners.get(uri)
        if owner is not None:
            return owner
        for template, upstream in self._snapshot.template_owners:
            if match_uri_template(template, uri) is not None:
                return upstream
        return None

    async def _route_read(
        self, params: JsonObject, ctx: RequestContext, observation: CallObservation | None
    ) -> JsonObject:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise McpError(INVALID_PARAMS, "missing or invalid parameter 'uri'")
        if uri in {resource.uri for resource in self.mcp.resources}:
            return await self._read_own_resource(params, ctx)
        if uri.startswith(OUTPUT_URI_PREFIX):
            output = self.guard.read_output(uri, ctx)
            if output is None:
                raise McpError(
                    RESOURCE_NOT_FOUND,
                    f"output not found: {uri} (outputs are kept in memory, oldest dropped"
                    f" first, and are gone when the proxy stops)",
                    {"uri": uri},
                )
            return output
        owner = self._owner_of(uri)
        if owner is not None:
            return await self._read_upstream_resource(owner, params, ctx, observation)
        # Not listed by anyone (a resource may be readable without being listed): ask each.
        for name in self.upstreams:
            try:
                return await self._read_upstream_resource(name, params, ctx, observation)
            except McpError as exc:
                if exc.code not in (RESOURCE_NOT_FOUND, INVALID_PARAMS, METHOD_NOT_FOUND):
                    raise
            except UpstreamUnavailable:
                continue
        if observation is not None:
            observation.upstream = observation.generation = None  # none of them had it
        code = INVALID_PARAMS if ctx.session.stateless else RESOURCE_NOT_FOUND
        raise McpError(code, f"resource not found: {uri}", {"uri": uri})

    async def _read_upstream_resource(
        self,
        name: str,
        params: JsonObject,
        ctx: RequestContext,
        observation: CallObservation | None,
    ) -> JsonObject:
        self._attribute(ctx, name)
        return await self._forward(name, "resources/read", dict(params), ctx, observation)

    async def _subscription(
        self, method: str, params: JsonObject, ctx: RequestContext
    ) -> JsonObject:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise McpError(INVALID_PARAMS, "missing or invalid parameter 'uri'")
        owner = self._owner_of(uri)
        if owner is None:
            raise McpError(RESOURCE_NOT_FOUND, f"resource not found: {uri}", {"uri": uri})
        if method == "resources/subscribe":
            ctx.session.subscriptions.add(uri)
        else:
            ctx.session.subscriptions.discard(uri)
            if any(uri in session.subscriptions for session in self.mcp.sessions):
                return {}  # another client still wants its updates
        upstream = self.upstreams[owner]
        client = upstream.client
        if client is not None and client.stateless:
            # Stateless upstreams have no subscribe; the proxy keeps the downstream's record.
            return {}
        await upstream.forward(method, {"uri": uri}, ctx)
        return {}

    async def _complete(self, params: JsonObject, ctx: RequestContext) -> JsonObject:
        ref = params.get("ref")
        if isinstance(ref, dict) and ref.get("type") == "ref/prompt":
            route = self._route(self._snapshot.prompt_routes, ref, "prompt")
            forwarded = {**params, "ref": {**ref, "name": route.name}}
            self._attribute(ctx, route.upstream)
            upstream = self.upstreams[route.upstream]
            return await upstream.forward("completion/complete", forwarded, ctx)
        if isinstance(ref, dict) and isinstance(ref.get("uri"), str):
            owner = self._owner_of(ref["uri"])
            if owner is not None:
                self._attribute(ctx, owner)
                return await self.upstreams[owner].forward("completion/complete", params, ctx)
        return {"completion": {"values": [], "total": 0, "hasMore": False}}


async def _finishing(observation: CallObservation, call: Awaitable[JsonObject]) -> JsonObject:
    """Await ``call`` and finish ``observation`` with how it ended: one record per call,
    whatever happens to it (cancelled too)."""
    outcome = Outcome.FAILED
    failure: Failure | None = Failure("Cancelled", "the call was cancelled before it ended")
    try:
        result = await call
        if observation.failure is None:
            outcome = Outcome.TOOL_ERROR if result.get("isError") is True else Outcome.OK
            failure = None
        else:
            failure = observation.failure
        return result
    except McpError as error:
        failure = Failure("McpError", error.message, error.code)
        raise
    except trio.Cancelled:
        raise
    except Exception as error:
        failure = Failure(type(error).__name__, str(error))
        raise
    finally:
        if not observation.finish_now(outcome, failure):
            with trio.CancelScope(shield=True):
                await observation.finish(outcome, failure)


def _carry_trace(params: JsonObject, observation: CallObservation) -> None:
    """The call's ``traceparent`` in ``params``' ``_meta``, in place of any the client sent: a
    traced upstream joins the call's trace (W3C trace context, as MCP servers read it)."""
    traceparent = observation.traceparent()
    if traceparent is not None:
        meta = params.get("_meta")
        params["_meta"] = {**(meta if isinstance(meta, dict) else {}), "traceparent": traceparent}


def _merge(upstreams: Sequence[Upstream]) -> _Snapshot:
    listed = [(u, u.listing) for u in upstreams if u.listing is not None]
    tool_routes, tool_collisions = build_routes(
        "tool", ((u.name, u.prefix, [t.name for t in listing.tools]) for u, listing in listed)
    )
    prompt_routes, prompt_collisions = build_routes(
        "prompt", ((u.name, u.prefix, [p.name for p in listing.prompts]) for u, listing in listed)
    )
    tools: list[Tool] = []
    prompts: list[JsonObject] = []
    resources: list[JsonObject] = []
    templates: list[JsonObject] = []
    resource_owners: dict[str, str] = {}
    template_owners: list[tuple[str, str]] = []
    for upstream, listing in listed:
        for tool in listing.tools:
            exposed = exposed_name(upstream.prefix, tool.name)
            if tool_routes.get(exposed) == Route(upstream.name, tool.name):
                tools.append(attrs.evolve(tool, name=exposed))
        for prompt in listing.prompts:
            exposed = exposed_name(upstream.prefix, prompt.name)
            if prompt_routes.get(exposed) == Route(upstream.name, prompt.name):
                prompts.append({**prompt.to_json(), "name": exposed})
        for resource in listing.resources:
            if resource.uri not in resource_owners:
                resource_owners[resource.uri] = upstream.name
                resources.append(resource.to_json())
        for template in listing.templates:
            template_owners.append((template.uri_template, upstream.name))
            templates.append(template.to_json())
    # Deterministic order whatever order the upstreams answered in.
    tools.sort(key=lambda item: item.name)
    prompts.sort(key=lambda item: item["name"])
    return _Snapshot(
        tool_objects=tuple(tools),
        tools=[tool.to_json() for tool in tools],
        prompts=prompts,
        resources=resources,
        templates=templates,
        tool_routes=tool_routes,
        prompt_routes=prompt_routes,
        resource_owners=resource_owners,
        template_owners=template_owners,
        collisions={
            (collision.kind, name): collision
            for name, collision in [*tool_collisions.items(), *prompt_collisions.items()]
        },
    )
