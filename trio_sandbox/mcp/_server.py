"""The transport-independent MCP server: a registry of tools, resources and prompts, and sessions.

A transport turns bytes into :mod:`._jsonrpc` messages and hands each one to a
:class:`ServerSession` with a ``send`` function for messages related to it. The session runs the
request in its own cancel scope (so ``notifications/cancelled`` or a closed stream cancels it) and
answers through ``send``. Transports own the tasks; this module starts none of its own.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeAlias, cast

import attrs
import jsonschema
import jsonschema.exceptions
import trio

from . import _versions as versions
from ._jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    RESOURCE_NOT_FOUND,
    UNSUPPORTED_PROTOCOL_VERSION,
    ErrorResponse,
    JsonObject,
    McpError,
    Message,
    Notification,
    Request,
    RequestId,
    Response,
)
from ._types import (
    CallToolResult,
    Content,
    GetPromptResult,
    Implementation,
    Prompt,
    Resource,
    ResourceContents,
    ResourceTemplate,
    Tool,
)

logger = logging.getLogger("trio_sandbox.mcp.server")

SendMessage: TypeAlias = Callable[[Message], Awaitable[None]]
ToolReturn: TypeAlias = CallToolResult | str | Content | Sequence[Content]
ToolHandler: TypeAlias = Callable[[dict[str, Any], "RequestContext"], Awaitable[ToolReturn]]
ResourceReader: TypeAlias = Callable[[str, "RequestContext"], Awaitable[Sequence[ResourceContents]]]
TemplateReader: TypeAlias = Callable[
    [str, dict[str, str], "RequestContext"], Awaitable[Sequence[ResourceContents]]
]
PromptRenderer: TypeAlias = Callable[[dict[str, str], "RequestContext"], Awaitable[GetPromptResult]]
CompletionHandler: TypeAlias = Callable[
    [JsonObject, JsonObject, JsonObject | None, "RequestContext"], Awaitable[Sequence[str]]
]

LOG_LEVELS: Final = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)


_CACHEABLE_METHODS: Final = frozenset(
    {
        "server/discover",
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
        "resources/read",
    }
)


class ToolError(Exception):
    """Raised by a tool handler for a failure the model should read: becomes ``isError: true``."""


@attrs.frozen
class RegisteredTool:
    tool: Tool
    handler: ToolHandler
    validator: Any  # a jsonschema validator for the input schema

    def validate(self, arguments: dict[str, Any]) -> str | None:
        """The first schema violation, phrased for a model to act on, or None."""
        error = jsonschema.exceptions.best_match(self.validator.iter_errors(arguments))
        if error is None:
            return None
        where = "/".join(str(part) for part in error.absolute_path)
        return f"invalid arguments for tool {self.tool.name!r}" + (
            f" at {where!r}: {error.message}" if where else f": {error.message}"
        )


def _validator_for(schema: Mapping[str, Any]) -> Any:
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    try:
        validator_class.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise ValueError(f"invalid inputSchema: {exc.message}") from None
    return validator_class(schema)


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode()


def decode_cursor(cursor: object) -> int:
    if cursor is None:
        return 0
    try:
        if not isinstance(cursor, str):
            raise ValueError
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        if not text.startswith("o"):
            raise ValueError
        offset = int(text[1:])
        if offset < 0:
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise McpError(INVALID_PARAMS, f"invalid cursor: {cursor!r}") from None
    return offset


def paginate(
    items: Sequence[JsonObject], key: str, params: JsonObject, page_size: int
) -> JsonObject:
    """One page of a list result, with an opaque ``nextCursor`` when more remain."""
    offset = decode_cursor(params.get("cursor"))
    page = list(items[offset : offset + page_size])
    result: JsonObject = {key: page}
    if offset + page_size < len(items):
        result["nextCursor"] = encode_cursor(offset + page_size)
    return result


def normalize_tool_return(value: ToolReturn) -> CallToolResult:
    if isinstance(value, CallToolResult):
        return value
    if isinstance(value, str):
        return CallToolResult.text(value)
    if isinstance(value, (list, tuple)):
        return CallToolResult(content=tuple(value))
    return CallToolResult(content=(cast(Content, value),))


def _match_template(template: str, uri: str) -> dict[str, str] | None:
    """Match a level-1 RFC 6570 template ("file:///{path}") against a URI."""
    names: list[str] = []
    pattern = ""
    rest = template
    while "{" in rest:
        head, _, tail = rest.partition("{")
        name, _, rest = tail.partition("}")
        pattern += re.escape(head)
        names.append(name.lstrip("+#"))
        pattern += "(.+)" if name.startswith("+") else "([^/]+)"
    pattern += re.escape(rest)
    match = re.fullmatch(pattern, uri)
    if match is None:
        return None
    return dict(zip(names, match.groups(), strict=True))


@attrs.define(eq=False)
class McpServer:
    """What one MCP server offers. Transports serve it; many sessions may share it."""

    info: Implementation
    instructions: str | None = None
    page_size: int = 100
    # Cache hints of stateless-era list results: how long a client may reuse a listing, and
    # whether it may share it with other users ("public") or not ("private").
    cache_ttl_ms: int = 0
    cache_scope: str = "private"
    _tools: dict[str, RegisteredTool] = attrs.field(factory=dict)
    _resources: dict[str, tuple[Resource, ResourceReader]] = attrs.field(factory=dict)
    _templates: list[tuple[ResourceTemplate, TemplateReader]] = attrs.field(factory=list)
    _prompts: dict[str, tuple[Prompt, PromptRenderer]] = attrs.field(factory=dict)
    _completion: CompletionHandler | None = None
    _sessions: set[ServerSession] = attrs.field(factory=set)

    # --- registration -----------------------------------------------------------------------

    def add_tool(self, tool: Tool, handler: ToolHandler) -> None:
        self._tools[tool.name] = RegisteredTool(tool, handler, _validator_for(tool.input_schema))

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

    def decorate_stateless_result(self, method: str, result: JsonObject) -> JsonObject:
        """Add the members every 2026-07-28 result carries: resultType, and cache hints on lists."""
        result.setdefault("resultType", "complete")
        if method in _CACHEABLE_METHODS:
            result.setdefault("ttlMs", self.cache_ttl_ms)
            result.setdefault("cacheScope", self.cache_scope)
        return result

    def capabilities(self) -> JsonObject:
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

    async def notify_list_changed(self, kind: str) -> None:
        """Tell every session with a standalone channel that the tools/resources/prompts changed."""
        note = Notification(f"notifications/{kind}/list_changed")
        for session in list(self._sessions):
            await session.send_standalone(note)

    async def notify_resource_updated(self, uri: str) -> None:
        note = Notification("notifications/resources/updated", {"uri": uri})
        for session in list(self._sessions):
            if uri in session.subscriptions:
                await session.send_standalone(note)

    # --- requests ---------------------------------------------------------------------------

    async def handle_request(self, request: Request, ctx: RequestContext) -> JsonObject:
        """The result of one request other than initialize; raises McpError for errors."""
        params = request.params or {}
        method = request.method
        if method == "ping":
            return {}
        if method == "server/discover":
            return discover_result(self)
        if method == "tools/list":
            return paginate(
                [t.tool.to_json() for t in self._tools.values()], "tools", params, self.page_size
            )
        if method == "tools/call":
            return (await self.call_tool(params, ctx)).to_json()
        if method == "resources/list":
            listed = [resource.to_json() for resource, _ in self._resources.values()]
            return paginate(listed, "resources", params, self.page_size)
        if method == "resources/templates/list":
            listed = [template.to_json() for template, _ in self._templates]
            return paginate(listed, "resourceTemplates", params, self.page_size)
        if method == "resources/read":
            return await self._read_resource(params, ctx)
        if method in ("resources/subscribe", "resources/unsubscribe"):
            uri = _string_param(params, "uri")
            if method == "resources/subscribe":
                ctx.session.subscriptions.add(uri)
            else:
                ctx.session.subscriptions.discard(uri)
            return {}
        if method == "prompts/list":
            listed = [prompt.to_json() for prompt, _ in self._prompts.values()]
            return paginate(listed, "prompts", params, self.page_size)
        if method == "prompts/get":
            return await self._get_prompt(params, ctx)
        if method == "completion/complete":
            return await self._complete(params, ctx)
        if method == "logging/setLevel":
            level = _string_param(params, "level")
            if level not in LOG_LEVELS:
                raise McpError(INVALID_PARAMS, f"unknown log level {level!r}; one of {LOG_LEVELS}")
            ctx.session.log_level = level
            return {}
        raise McpError(METHOD_NOT_FOUND, f"method not found: {method}")

    async def call_tool(self, params: JsonObject, ctx: RequestContext) -> CallToolResult:
        name = _string_param(params, "name")
        registered = self._tools.get(name)
        if registered is None:
            raise McpError(INVALID_PARAMS, f"unknown tool: {name!r}")
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return CallToolResult.error(f"arguments for tool {name!r} must be an object")
        problem = registered.validate(arguments)
        if problem is not None:
            return CallToolResult.error(problem)
        try:
            return normalize_tool_return(await registered.handler(arguments, ctx))
        except ToolError as exc:
            return CallToolResult.error(str(exc))
        except McpError:
            raise
        except Exception as exc:
            logger.exception("tool %r failed", name)
            return CallToolResult.error(f"tool {name!r} failed: {type(exc).__name__}: {exc}")

    async def _read_resource(self, params: JsonObject, ctx: RequestContext) -> JsonObject:
        uri = _string_param(params, "uri")
        contents: Sequence[ResourceContents] | None = None
        if uri in self._resources:
            contents = await self._resources[uri][1](uri, ctx)
        else:
            for template, reader in self._templates:
                variables = _match_template(template.uri_template, uri)
                if variables is not None:
                    contents = await reader(uri, variables, ctx)
                    break
        if contents is None:
            # 2026-07-28 settled on invalid-params for an unknown URI; older versions used -32002.
            code = INVALID_PARAMS if ctx.session.stateless else RESOURCE_NOT_FOUND
            raise McpError(code, f"resource not found: {uri}", {"uri": uri})
        return {"contents": [item.to_json() for item in contents]}

    async def _get_prompt(self, params: JsonObject, ctx: RequestContext) -> JsonObject:
        name = _string_param(params, "name")
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


def _string_param(params: JsonObject, key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str):
        raise McpError(INVALID_PARAMS, f"missing or invalid parameter {key!r}")
    return value


@attrs.define(eq=False)
class RequestContext:
    """What a handler knows about the request it serves, and how it talks back."""

    session: ServerSession
    request_id: RequestId
    method: str
    meta: Mapping[str, Any]
    _send: SendMessage

    @property
    def server(self) -> McpServer:
        return self.session.server

    @property
    def protocol_version(self) -> str:
        return self.session.protocol_version or versions.LATEST_HANDSHAKE_VERSION

    @property
    def progress_token(self) -> str | int | None:
        token = self.meta.get("progressToken")
        return token if isinstance(token, (str, int)) else None

    async def send_notification(self, method: str, params: JsonObject | None = None) -> None:
        await self._send(Notification(method, params))

    async def report_progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Send notifications/progress when the caller asked for it (it gave a progressToken)."""
        token = self.progress_token
        if token is None:
            return
        params: JsonObject = {"progressToken": token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.send_notification("notifications/progress", params)

    async def log(self, level: str, data: Any, logger_name: str | None = None) -> None:
        """Send notifications/message unless the client asked for a higher level."""
        threshold = self.session.log_level
        if threshold is not None and LOG_LEVELS.index(level) < LOG_LEVELS.index(threshold):
            return
        params: JsonObject = {"level": level, "data": data}
        if logger_name is not None:
            params["logger"] = logger_name
        await self.send_notification("notifications/message", params)

    async def send_request(self, method: str, params: JsonObject | None = None) -> JsonObject:
        """Ask the client something (sampling, elicitation, roots) and wait for its answer."""
        return await self.session.request_client(method, params, self._send)


@attrs.define(eq=False)
class _PendingClientRequest:
    done: trio.Event = attrs.field(factory=trio.Event)
    outcome: Response | ErrorResponse | None = None


@attrs.define(eq=False)
class ServerSession:
    """One client's view of a server: negotiated version, log level, subscriptions, in-flight work.

    In the stateless era every request gets a throwaway session whose version comes from ``_meta``.
    """

    server: McpServer
    session_id: str | None = None
    _send_standalone: SendMessage | None = None
    protocol_version: str | None = None
    client_info: JsonObject | None = None
    client_capabilities: JsonObject = attrs.field(factory=dict)
    initialized: bool = False
    log_level: str | None = None
    subscriptions: set[str] = attrs.field(factory=set)
    closed: bool = False
    _in_flight: dict[RequestId, trio.CancelScope] = attrs.field(factory=dict)
    _client_requests: dict[RequestId, _PendingClientRequest] = attrs.field(factory=dict)
    _next_request_id: int = 0

    @property
    def stateless(self) -> bool:
        return self.protocol_version is not None and versions.is_stateless(self.protocol_version)

    @classmethod
    def new_id(cls) -> str:
        return secrets.token_urlsafe(24)

    def close(self) -> None:
        self.closed = True
        for scope in self._in_flight.values():
            scope.cancel()
        for pending in self._client_requests.values():
            pending.done.set()

    async def send_standalone(self, message: Message) -> None:
        """Send a message not tied to a request (GET stream, stdio); dropped when none is open."""
        if self._send_standalone is not None and not self.closed:
            await self._send_standalone(message)

    def set_standalone(self, send: SendMessage | None) -> None:
        self._send_standalone = send
        if send is not None:
            self.server._sessions.add(self)

    @property
    def in_flight(self) -> frozenset[RequestId]:
        return frozenset(self._in_flight)

    def cancel_request(self, request_id: RequestId) -> bool:
        scope = self._in_flight.get(request_id)
        if scope is None:
            return False
        scope.cancel()
        return True

    # --- inbound ----------------------------------------------------------------------------

    async def handle_request(self, request: Request, send: SendMessage) -> None:
        """Run one request to completion and send its response (none when it was cancelled)."""
        if request.id in self._in_flight:
            await send(
                ErrorResponse(request.id, McpError(INVALID_REQUEST, "duplicate request id").error)
            )
            return
        meta = (request.params or {}).get("_meta")
        ctx = RequestContext(
            self, request.id, request.method, meta if isinstance(meta, dict) else {}, send
        )
        with trio.CancelScope() as scope:
            self._in_flight[request.id] = scope
            try:
                response = await self._respond(request, ctx)
            finally:
                del self._in_flight[request.id]
        if scope.cancelled_caught:
            return
        await send(response)

    async def _respond(self, request: Request, ctx: RequestContext) -> Response | ErrorResponse:
        try:
            if request.method == "initialize":
                result = self._initialize(request.params or {})
            else:
                result = await self.server.handle_request(request, ctx)
            if self.stateless:
                result = self.server.decorate_stateless_result(request.method, result)
        except McpError as exc:
            return exc.response_for(request.id)
        except Exception:
            logger.exception("request %s failed", request.method)
            return ErrorResponse(
                request.id,
                McpError(INTERNAL_ERROR, f"internal error while handling {request.method}").error,
            )
        return Response(request.id, result)

    def _initialize(self, params: JsonObject) -> JsonObject:
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise McpError(INVALID_PARAMS, "initialize needs a protocolVersion string")
        version = (
            requested
            if requested in versions.HANDSHAKE_VERSIONS
            else versions.LATEST_HANDSHAKE_VERSION
        )
        capabilities = params.get("capabilities")
        client_info = params.get("clientInfo")
        self.protocol_version = version
        self.client_capabilities = capabilities if isinstance(capabilities, dict) else {}
        self.client_info = client_info if isinstance(client_info, dict) else None
        result: JsonObject = {
            "protocolVersion": version,
            "capabilities": self.server.capabilities(),
            "serverInfo": self.server.info.to_json(),
        }
        if self.server.instructions is not None:
            result["instructions"] = self.server.instructions
        return result

    def handle_notification(self, note: Notification) -> None:
        params = note.params or {}
        if note.method == "notifications/initialized":
            self.initialized = True
        elif note.method == "notifications/cancelled":
            request_id = params.get("requestId")
            if isinstance(request_id, (str, int)):
                self.cancel_request(request_id)
        # Other notifications (roots/list_changed, progress) need no action here.

    def handle_response(self, message: Response | ErrorResponse) -> None:
        """Deliver the client's answer to a request this server sent it."""
        if message.id is None:
            return
        pending = self._client_requests.get(message.id)
        if pending is not None:
            pending.outcome = message
            pending.done.set()

    # --- outbound requests ------------------------------------------------------------------

    async def request_client(
        self, method: str, params: JsonObject | None, send: SendMessage
    ) -> JsonObject:
        if versions.is_stateless(self.protocol_version or ""):
            raise McpError(
                INVALID_REQUEST,
                f"{method} cannot be sent to a client in the stateless protocol era",
            )
        self._next_request_id += 1
        request_id = f"s-{self._next_request_id}"
        pending = _PendingClientRequest()
        self._client_requests[request_id] = pending
        try:
            await send(Request(request_id, method, params))
            await pending.done.wait()
        finally:
            del self._client_requests[request_id]
        if isinstance(pending.outcome, Response):
            return pending.outcome.result
        if isinstance(pending.outcome, ErrorResponse):
            raise McpError(
                pending.outcome.error.code,
                pending.outcome.error.message,
                pending.outcome.error.data,
            )
        raise McpError(INTERNAL_ERROR, f"the session closed before the client answered {method}")


def stateless_session(server: McpServer, params: JsonObject | None) -> ServerSession:
    """The throwaway session of one stateless-era request, from its ``_meta`` envelope."""
    meta = (params or {}).get("_meta")
    meta = meta if isinstance(meta, dict) else {}
    version = meta.get(versions.META_PROTOCOL_VERSION)
    if not isinstance(version, str) or version not in versions.STATELESS_VERSIONS:
        raise McpError(
            UNSUPPORTED_PROTOCOL_VERSION,
            f"unsupported protocol version: {version!r}",
            {"supported": list(versions.SUPPORTED_VERSIONS), "requested": version},
        )
    session = ServerSession(server, protocol_version=version, initialized=True)
    capabilities = meta.get(versions.META_CLIENT_CAPABILITIES)
    session.client_capabilities = capabilities if isinstance(capabilities, dict) else {}
    client_info = meta.get(versions.META_CLIENT_INFO)
    session.client_info = client_info if isinstance(client_info, dict) else None
    return session


def discover_result(server: McpServer) -> JsonObject:
    result: JsonObject = {
        "supportedVersions": list(versions.SUPPORTED_VERSIONS),
        "capabilities": server.capabilities(),
        "_meta": {versions.META_SERVER_INFO: server.info.to_json()},
    }
    if server.instructions is not None:
        result["instructions"] = server.instructions
    return result
