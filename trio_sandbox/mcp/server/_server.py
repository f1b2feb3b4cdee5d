"""The MCP server core: what a server offers, the method table that answers requests, and the
sessions that broadcasts reach.

A transport turns what it receives into messages and hands each one to a
:class:`ServerSession` (``._session``) with a ``send`` function for messages related to it; the
session runs the request in its own cancel scope and asks :meth:`McpServer.handle_request`,
which looks the method up in the table.
Extensions (the aggregating proxy) route methods of their own with :meth:`McpServer.route`
rather than subclassing. Transports own the tasks; this module starts none of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias

import attrs

from ..protocol import _versions as versions
from ..protocol._errors import McpError, ToolError
from ..protocol._messages import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    RESOURCE_NOT_FOUND,
    JsonObject,
    Message,
    Notification,
    Request,
)
from ..protocol._types import (
    CallToolResult,
    Implementation,
    Prompt,
    Resource,
    ResourceContents,
    ResourceTemplate,
    Tool,
)
from ._context import LOG_LEVELS, OutgoingFilter, RequestContext, SendMessage
from ._input_requests import InputRequired, RequestStateCodec
from ._listing import (
    CACHEABLE_LISTINGS,
    HANDSHAKE_ONLY_METHODS,
    NO_CACHING,
    CacheHint,
    match_uri_template,
    paginate,
    string_param,
)
from ._registry import (
    CompletionHandler,
    PromptRenderer,
    RegisteredTool,
    ResourceReader,
    TemplateReader,
    ToolHandler,
    normalize_tool_return,
)
from ._session import ServerSession
from ._subscriptions import ListenRegistry

logger = logging.getLogger("trio_sandbox.mcp.server")

# Answers one request method: its params and context in, its result out (McpError for errors).
MethodHandler: TypeAlias = Callable[[JsonObject, RequestContext], Awaitable[JsonObject]]


async def _pong(params: JsonObject, ctx: RequestContext) -> JsonObject:
    return {}


async def _subscribe(params: JsonObject, ctx: RequestContext) -> JsonObject:
    ctx.session.subscriptions.add(string_param(params, "uri"))
    return {}


async def _unsubscribe(params: JsonObject, ctx: RequestContext) -> JsonObject:
    ctx.session.subscriptions.discard(string_param(params, "uri"))
    return {}


async def _set_log_level(params: JsonObject, ctx: RequestContext) -> JsonObject:
    level = string_param(params, "level")
    if level not in LOG_LEVELS:
        raise McpError(INVALID_PARAMS, f"unknown log level {level!r}; one of {LOG_LEVELS}")
    ctx.session.log_level = level
    return {}


@attrs.define(eq=False)
class McpServer:
    """What one MCP server offers. Transports serve it; many sessions may share it."""

    info: Implementation
    instructions: str | None = None
    page_size: int = 100
    # Cache hints of stateless-era results: listings (and server/discover), and resources/read.
    list_cache: CacheHint = NO_CACHING
    read_cache: CacheHint = NO_CACHING
    # Seals the answers of multi round-trip requests; share its key between replicas.
    state_codec: RequestStateCodec = attrs.field(factory=RequestStateCodec)
    listeners: ListenRegistry = attrs.field(factory=ListenRegistry)
    _tools: dict[str, RegisteredTool] = attrs.field(factory=dict)
    _resources: dict[str, tuple[Resource, ResourceReader]] = attrs.field(factory=dict)
    _templates: list[tuple[ResourceTemplate, TemplateReader]] = attrs.field(factory=list)
    _prompts: dict[str, tuple[Prompt, PromptRenderer]] = attrs.field(factory=dict)
    _completion: CompletionHandler | None = None
    _sessions: set[ServerSession] = attrs.field(factory=set)
    # The method table: what answers each request method (see :meth:`route`).
    _methods: dict[str, MethodHandler] = attrs.field(factory=dict)
    _capabilities: Callable[[], JsonObject] | None = None
    _listen_offer: Callable[[], frozenset[str]] | None = None
    _outgoing: OutgoingFilter | None = None

    def __attrs_post_init__(self) -> None:
        builtin: dict[str, MethodHandler] = {
            "ping": _pong,
            "server/discover": self._discover,
            "subscriptions/listen": self._listen,
            "tools/list": self._list_tools,
            "tools/call": self._call_tool,
            "resources/list": self._list_resources,
            "resources/templates/list": self._list_templates,
            "resources/read": self.read_resource,
            "resources/subscribe": _subscribe,
            "resources/unsubscribe": _unsubscribe,
            "prompts/list": self._list_prompts,
            "prompts/get": self._get_prompt,
            "completion/complete": self._complete,
            "logging/setLevel": _set_log_level,
        }
        self._methods.update(builtin)

    # --- the seams: what extends a server without subclassing it ---------------------------

    def route(self, method: str, handler: MethodHandler) -> None:
        """Answer ``method`` with ``handler`` from now on (replacing the built-in one, which
        :meth:`handler_for` returns for a handler that wants to delegate to it)."""
        self._methods[method] = handler

    def handler_for(self, method: str) -> MethodHandler | None:
        return self._methods.get(method)

    def set_capabilities(self, capabilities: Callable[[], JsonObject]) -> None:
        """What ``initialize`` and ``server/discover`` announce (default: from the registry)."""
        self._capabilities = capabilities

    def set_listen_offer(self, offer: Callable[[], frozenset[str]]) -> None:
        """The ``subscriptions/listen`` filter members this server honours."""
        self._listen_offer = offer

    def set_outgoing_filter(self, outgoing: OutgoingFilter) -> None:
        """Pass every message a session sends its client through ``outgoing`` first: responses
        (errors included), notifications and requests of a request (with its context), and
        messages not tied to a request (with None). It returns the message to send, or None to
        send nothing; for a response it must return one."""
        self._outgoing = outgoing

    async def outgoing(self, message: Message, ctx: RequestContext | None) -> Message | None:
        """``message`` as the outgoing filter lets it leave (see :meth:`set_outgoing_filter`)."""
        if self._outgoing is None:
            return message
        return await self._outgoing(message, ctx)

    @property
    def sessions(self) -> frozenset[ServerSession]:
        """The sessions that receive broadcasts (list changes, resource updates, logs)."""
        return frozenset(self._sessions)

    @property
    def resources(self) -> list[Resource]:
        return [resource for resource, _ in self._resources.values()]

    # --- registration -----------------------------------------------------------------------

    def add_tool(self, tool: Tool, handler: ToolHandler) -> None:
        self._tools[tool.name] = RegisteredTool(tool, handler)

    def tool(
        self,
        name: str,
        *,
        description: str | None = None,
        input_schema: Mapping[str, Any] | None = None,
        output_schema: Mapping[str, Any] | None = None,
        title: str | None = None,
        annotations: Mapping[str, Any] | None = None,
    ) -> Callable[[ToolHandler], ToolHandler]:
        """Decorator form of :meth:`add_tool`."""

        def register(handler: ToolHandler) -> ToolHandler:
            tool = Tool(
                name=name,
                description=description,
                input_schema=input_schema or {"type": "object", "properties": {}},
                output_schema=output_schema,
                title=title,
                annotations=annotations,
            )
            self.add_tool(tool, handler)
            return handler

        return register

    def remove_tool(self, name: str) -> None:
        del self._tools[name]

    def add_resource(self, resource: Resource, reader: ResourceReader) -> None:
        self._resources[resource.uri] = (resource, reader)

    def add_resource_template(self, template: ResourceTemplate, reader: TemplateReader) -> None:
        self._templates.append((template, reader))

    def add_prompt(self, prompt: Prompt, renderer: PromptRenderer) -> None:
        self._prompts[prompt.name] = (prompt, renderer)

    def set_completion_handler(self, handler: CompletionHandler) -> None:
        self._completion = handler

    @property
    def tools(self) -> list[Tool]:
        return [registered.tool for registered in self._tools.values()]

    def get_tool(self, name: object) -> Tool | None:
        registered = self._tools.get(name) if isinstance(name, str) else None
        return registered.tool if registered is not None else None

    def decorate_stateless_result(self, method: str, result: JsonObject) -> JsonObject:
        """Add the members every 2026-07-28 result carries: resultType, and cache hints."""
        result.setdefault("resultType", "complete")
        if result["resultType"] != "complete":
            return result
        hint = (
            self.list_cache
            if method in CACHEABLE_LISTINGS
            else self.read_cache
            if method == "resources/read"
            else None
        )
        if hint is not None:
            result.setdefault("ttlMs", hint.ttl_ms)
            result.setdefault("cacheScope", hint.scope)
        return result

    def capabilities(self) -> JsonObject:
        if self._capabilities is not None:
            return self._capabilities()
        capabilities: JsonObject = {
            "tools": {"listChanged": True},
            "logging": {},
        }
        if self._resources or self._templates:
            capabilities["resources"] = {"subscribe": True, "listChanged": True}
        if self._prompts:
            capabilities["prompts"] = {"listChanged": True}
        if self._completion is not None:
            capabilities["completions"] = {}
        return capabilities

    def listen_offer(self) -> frozenset[str]:
        """The subscriptions/listen filter members this server can honour."""
        if self._listen_offer is not None:
            return self._listen_offer()
        offer = {"toolsListChanged"}
        if self._prompts:
            offer.add("promptsListChanged")
        if self._resources or self._templates:
            offer.update({"resourcesListChanged", "resourceSubscriptions"})
        return frozenset(offer)

    # --- sessions and broadcast -------------------------------------------------------------

    def open_session(
        self, *, session_id: str | None = None, send_standalone: SendMessage | None = None
    ) -> ServerSession:
        session = ServerSession(self, session_id=session_id, send_standalone=send_standalone)
        if session_id is not None or send_standalone is not None:
            self._sessions.add(session)
        return session

    def close_session(self, session: ServerSession) -> None:
        self._sessions.discard(session)
        session.close()

    def watch_session(self, session: ServerSession) -> None:
        """Include ``session`` in broadcasts (it has a channel for unsolicited messages now)."""
        self._sessions.add(session)

    async def notify_list_changed(self, kind: str) -> None:
        """Tell every listener that the tools/resources/prompts changed.

        Listeners are sessions with a standalone channel (handshake era) and open
        ``subscriptions/listen`` streams that asked for this kind (stateless era).
        """
        note = Notification(f"notifications/{kind}/list_changed")
        for session in list(self._sessions):
            await session.send_standalone(note)
        self.listeners.list_changed(kind)

    async def notify_resource_updated(self, uri: str) -> None:
        note = Notification("notifications/resources/updated", {"uri": uri})
        for session in list(self._sessions):
            if uri in session.subscriptions:
                await session.send_standalone(note)
        self.listeners.resource_updated(uri)

    # --- requests ---------------------------------------------------------------------------

    async def handle_request(self, request: Request, ctx: RequestContext) -> JsonObject:
        """The result of one request other than initialize; raises McpError for errors."""
        method = request.method
        if ctx.session.stateless and method in HANDSHAKE_ONLY_METHODS:
            raise McpError(METHOD_NOT_FOUND, f"method not found in the stateless era: {method}")
        handler = self._methods.get(method)
        if handler is None:
            raise McpError(METHOD_NOT_FOUND, f"method not found: {method}")
        return await handler(request.params or {}, ctx)

    # --- the built-in methods ---------------------------------------------------------------

    async def _discover(self, params: JsonObject, ctx: RequestContext) -> JsonObject:
        return discover_result(self)

    async def _listen(self, params: JsonObject, ctx: RequestContext) -> JsonObject:
        if not ctx.session.stateless:
            raise McpError(METHOD_NOT_FOUND, "subscriptions/listen is a stateless-era method")
        return await self.listeners.listen(
            self.listen_offer(), params, ctx.request_id, ctx.send_notification
        )

    async def _list_tools(self, params: JsonObject, ctx: RequestContext) -> JsonObject:
        listed = [t.tool.to_json() for t in self._tools.values()]
        return paginate(listed, "tools", params, self.page_size)

    async def _call_tool(self, params: JsonObject, ctx: RequestContext) -> JsonObject:
        return (await self.call_tool(params, ctx)).to_json()

    async def _list_resources(self, params: JsonObject, ctx: RequestContext) -> JsonObject:
        listed = [resource.to_json() for resource, _ in self._resources.values()]
        return paginate(listed, "resources", params, self.page_size)

    async def _list_templates(self, params: JsonObject, ctx: RequestContext) -> JsonObject:
        listed = [template.to_json() for template, _ in self._templates]
        return paginate(listed, "resourceTemplates", params, self.page_size)

    async def _list_prompts(self, params: JsonObject, ctx: RequestContext) -> JsonObject:
        listed = [prompt.to_json() for prompt, _ in self._prompts.values()]
        return paginate(listed, "prompts", params, self.page_size)

    async def call_tool(self, params: JsonObject, ctx: RequestContext) -> CallToolResult:
        name = string_param(params, "name")
        registered = self._tools.get(name)
        if registered is None:
            raise McpError(INVALID_PARAMS, f"unknown tool: {name!r}")
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return CallToolResult.error(f"arguments for tool {name!r} must be an object")
        try:
            problem = registered.validate(arguments)
        except ValueError as exc:  # the tool's own inputSchema is broken (checked on first use)
            logger.error("tool %r: %s", name, exc)
            return CallToolResult.error(f"tool {name!r} cannot be called: {exc}")
        if problem is not None:
            return CallToolResult.error(problem)
        try:
            return normalize_tool_return(await registered.handler(arguments, ctx))
        except ToolError as exc:
            return CallToolResult.error(str(exc))
        except (McpError, InputRequired):
            raise
        except Exception as exc:
            logger.exception("tool %r failed", name)
            return CallToolResult.error(f"tool {name!r} failed: {type(exc).__name__}: {exc}")

    async def read_resource(self, params: JsonObject, ctx: RequestContext) -> JsonObject:
        """``resources/read`` of this server's own resources and templates."""
        uri = string_param(params, "uri")
        contents: Sequence[ResourceContents] | None = None
        if uri in self._resources:
            contents = await self._resources[uri][1](uri, ctx)
        else:
            for template, reader in self._templates:
                variables = match_uri_template(template.uri_template, uri)
                if variables is not None:
                    contents = await reader(uri, variables, ctx)
                    break
        if contents is None:
            # 2026-07-28 settled on invalid-params for an unknown URI; older versions used -32002.
            code = INVALID_PARAMS if ctx.session.stateless else RESOURCE_NOT_FOUND
            raise McpError(code, f"resource not found: {uri}", {"uri": uri})
        return {"contents": [item.to_json() for item in contents]}

    async def _get_prompt(self, params: JsonObject, ctx: RequestContext) -> JsonObject:
        name = string_param(params, "name")
        if name not in self._prompts:
            raise McpError(INVALID_PARAMS, f"unknown prompt: {name!r}")
        prompt, renderer = self._prompts[name]
        arguments = params.get("arguments") or {}
        if not isinstance(arguments, dict) or not all(
            isinstance(v, str) for v in arguments.values()
        ):
            raise McpError(INVALID_PARAMS, "prompt arguments must be an object of strings")
        missing = [a.name for a in prompt.arguments if a.required and a.name not in arguments]
        if missing:
            raise McpError(INVALID_PARAMS, f"prompt {name!r} needs arguments: {', '.join(missing)}")
        return (await renderer(arguments, ctx)).to_json()

    async def _complete(self, params: JsonObject, ctx: RequestContext) -> JsonObject:
        ref = params.get("ref")
        argument = params.get("argument")
        context = params.get("context")
        if not isinstance(ref, dict) or not isinstance(argument, dict):
            raise McpError(INVALID_PARAMS, "completion/complete needs a ref and an argument")
        values: Sequence[str] = []
        if self._completion is not None:
            values = await self._completion(
                ref, argument, context if isinstance(context, dict) else None, ctx
            )
        values = list(values)[:100]
        return {"completion": {"values": values, "total": len(values), "hasMore": False}}


def discover_result(server: McpServer) -> JsonObject:
    # Versions a client may name in the _meta envelope of its next requests.
    result: JsonObject = {
        "supportedVersions": list(versions.STATELESS_VERSIONS),
        "capabilities": server.capabilities(),
        "_meta": {versions.META_SERVER_INFO: server.info.to_json()},
    }
    if server.instructions is not None:
        result["instructions"] = server.instructions
    return result
