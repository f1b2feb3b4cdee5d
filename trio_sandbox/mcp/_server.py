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
import trio

from ..concurrency import single_error
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
from ._mrtr import (
    InputRequest,
    InputRequired,
    InputRound,
    RequestStateCodec,
    missing_capability_error,
)
from ._subscriptions import ListenRegistry
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
# Ends the HTTP response stream of a request while the request goes on (SSE polling).
CloseStream: TypeAlias = Callable[[], Awaitable[bool]]
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


_LIST_METHODS: Final = frozenset(
    {"server/discover", "tools/list", "prompts/list", "resources/list", "resources/templates/list"}
)
# Methods of the handshake era that the stateless era removed (their jobs moved to _meta,
# server/discover and subscriptions/listen).
_HANDSHAKE_ONLY_METHODS: Final = frozenset(
    {"initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"}
)
# Requests whose handlers may ask the client for input with an input_required result.
_INPUT_TARGET_KEY: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


@attrs.frozen
class CacheHint:
    """How long (``ttl_ms``) and how widely (``scope``) a client may reuse a result."""

    ttl_ms: int = 0
    scope: str = "private"  # "public": no user-specific data, shareable across users

    def __attrs_post_init__(self) -> None:
        if self.ttl_ms < 0 or self.scope not in ("public", "private"):
            raise ValueError(f"invalid cache hint: {self!r}")


class ToolError(Exception):
    """Raised by a tool handler for a failure the model should read: becomes ``isError: true``."""


@attrs.define(eq=False)
class RegisteredTool:
    tool: Tool
    handler: ToolHandler
    # The input schema's jsonschema validator, compiled on the first call: importing jsonschema
    # and compiling every schema would otherwise delay a server's start.
    _validator: Any = None

    def validate(self, arguments: dict[str, Any]) -> str | None:
        """The first schema violation, phrased for a model to act on, or None."""
        import jsonschema.exceptions

        if self._validator is None:
            self._validator = _validator_for(self.tool.input_schema)
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(arguments))
        if error is None:
            return None
        where = "/".join(str(part) for part in error.absolute_path)
        return f"invalid arguments for tool {self.tool.name!r}" + (
            f" at {where!r}: {error.message}" if where else f": {error.message}"
        )


def _validator_for(schema: Mapping[str, Any]) -> Any:
    import jsonschema
    import jsonschema.exceptions

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
    # Cache hints of stateless-era results: listings (and server/discover), and resources/read.
    list_cache: CacheHint = CacheHint()
    read_cache: CacheHint = CacheHint()
    # Seals the answers of multi round-trip requests; share its key between replicas.
    state_codec: RequestStateCodec = attrs.field(factory=RequestStateCodec)
    listeners: ListenRegistry = attrs.field(factory=ListenRegistry)
    _tools: dict[str, RegisteredTool] = attrs.field(factory=dict)
    _resources: dict[str, tuple[Resource, ResourceReader]] = attrs.field(factory=dict)
    _templates: list[tuple[ResourceTemplate, TemplateReader]] = attrs.field(factory=list)
    _prompts: dict[str, tuple[Prompt, PromptRenderer]] = attrs.field(factory=dict)
    _completion: CompletionHandler | None = None
    _sessions: set[ServerSession] = attrs.field(factory=set)

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
            if method in _LIST_METHODS
            else self.read_cache
            if method == "resources/read"
            else None
        )
        if hint is not None:
            result.setdefault("ttlMs", hint.ttl_ms)
            result.setdefault("cacheScope", hint.scope)
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

    def _listen_offer(self) -> frozenset[str]:
        """The subscriptions/listen filter members this server can honour."""
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
        params = request.params or {}
        method = request.method
        if ctx.session.stateless and method in _HANDSHAKE_ONLY_METHODS:
            raise McpError(METHOD_NOT_FOUND, f"method not found in the stateless era: {method}")
        if method == "ping":
            return {}
        if method == "server/discover":
            return discover_result(self)
        if method == "subscriptions/listen" and ctx.session.stateless:
            return await self.listeners.listen(
                self._listen_offer(), params, ctx.request_id, ctx.send_notification
            )
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
    _close_stream: CloseStream | None = None
    # Stateless era: the answers this request brought for its handler's questions.
    input_round: InputRound | None = None

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
        """Send a notification related to this request (on its response stream)."""
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
        if threshold is None and self.session.stateless:
            # Stateless clients opt in per request with _meta logLevel.
            return
        if threshold is not None and LOG_LEVELS.index(level) < LOG_LEVELS.index(threshold):
            return
        params: JsonObject = {"level": level, "data": data}
        if logger_name is not None:
            params["logger"] = logger_name
        await self.send_notification("notifications/message", params)

    async def send_request(self, method: str, params: JsonObject | None = None) -> JsonObject:
        """Send the client a request on this request's stream (handshake era only)."""
        return await self.session.request_client(method, params, self._send)

    def client_supports(self, capability: str) -> bool:
        return isinstance(self.session.client_capabilities.get(capability), dict)

    def require_client_capabilities(self, *capabilities: str) -> None:
        """Refuse the request with -32021 unless the client declared every capability."""
        missing = [name for name in capabilities if not self.client_supports(name)]
        if missing:
            raise missing_capability_error(missing)

    async def ask(self, requests: Mapping[str, InputRequest]) -> dict[str, JsonObject]:
        """Ask the client every question in ``requests`` and return its answers by key.

        Handshake era: real server-to-client requests, sent concurrently on this request's
        stream. Stateless era: answers come from the retried request (``inputResponses``, and
        earlier rounds sealed in ``requestState``); until all are there this raises
        :class:`InputRequired`, which ends the handler with an ``input_required`` result, and the
        retry runs the handler again from the start. Keys must be unique within one request.
        """
        needed = sorted({r.required_capability for r in requests.values() if r.required_capability})
        self.require_client_capabilities(*needed)
        if self.input_round is not None:
            answers: dict[str, JsonObject] = {}
            missing: dict[str, InputRequest] = {}
            for key, request in requests.items():
                answer = self.input_round.answer(key, request)
                if answer is None:
                    missing[key] = request
                else:
                    answers[key] = answer
            if missing:
                raise InputRequired(missing)
            return answers
        results: dict[str, JsonObject] = {}

        async def ask_one(key: str, request: InputRequest) -> None:
            results[key] = await self.send_request(request.method, dict(request.params))

        # A declined or failed question is the McpError it raised, not a group around it.
        with single_error():
            async with trio.open_nursery() as nursery:
                for key, request in requests.items():
                    nursery.start_soon(ask_one, key, request)
        return {key: results[key] for key in requests}

    async def elicit(self, message: str, requested_schema: Mapping[str, Any]) -> JsonObject:
        """Ask the user to fill in a form; the ElicitResult (``action``, ``content``)."""
        answers = await self.ask({"elicit": InputRequest.elicitation(message, requested_schema)})
        return answers["elicit"]

    async def sample(self, prompt: str, max_tokens: int = 100) -> JsonObject:
        """Ask the client's model; the CreateMessageResult."""
        answers = await self.ask({"sample": InputRequest.sampling_text(prompt, max_tokens)})
        return answers["sample"]

    async def list_roots(self) -> list[JsonObject]:
        answers = await self.ask({"roots": InputRequest.roots()})
        roots = answers["roots"].get("roots")
        return [root for root in roots if isinstance(root, dict)] if isinstance(roots, list) else []

    async def close_sse_stream(self) -> bool:
        """End this request's HTTP response stream now; the client resumes it with GET.

        The request goes on and its later messages wait for the client to reconnect with
        ``Last-Event-ID`` (SSE polling, for long requests behind proxies that cut idle
        connections). Returns False when the transport has no such stream.
        """
        if self._close_stream is None:
            return False
        return await self._close_stream()


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

    async def handle_request(
        self, request: Request, send: SendMessage, *, close_stream: CloseStream | None = None
    ) -> None:
        """Run one request to completion and send its response (none when it was cancelled)."""
        if request.id in self._in_flight:
            await send(
                ErrorResponse(request.id, McpError(INVALID_REQUEST, "duplicate request id").error)
            )
            return
        meta = (request.params or {}).get("_meta")
        ctx = RequestContext(
            self,
            request.id,
            request.method,
            meta if isinstance(meta, dict) else {},
            send,
            close_stream,
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
        target = _input_target(request)
        try:
            if request.method == "initialize" and not self.stateless:
                result = self._initialize(request.params or {})
            else:
                if self.stateless and target is not None:
                    ctx.input_round = InputRound.from_params(
                        request.params or {}, self.server.state_codec, target
                    )
                try:
                    result = await self.server.handle_request(request, ctx)
                except InputRequired as exc:
                    assert ctx.input_round is not None
                    assert target is not None
                    result = ctx.input_round.input_required_result(
                        exc.requests, self.server.state_codec, target
                    )
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


def _input_target(request: Request) -> str | None:
    """What a requestState is bound to: the method and its tool, prompt or resource."""
    key = _INPUT_TARGET_KEY.get(request.method)
    if key is None:
        return None
    return f"{request.method} {(request.params or {}).get(key)}"


def stateless_session(server: McpServer, params: JsonObject | None) -> ServerSession:
    """The throwaway session of one stateless-era request, from its ``_meta`` envelope."""
    meta = (params or {}).get("_meta")
    meta = meta if isinstance(meta, dict) else {}
    version = meta.get(versions.META_PROTOCOL_VERSION)
    if not isinstance(version, str) or version not in versions.STATELESS_VERSIONS:
        raise unsupported_version_error(version)
    session = ServerSession(server, protocol_version=version, initialized=True)
    log_level = meta.get(versions.META_LOG_LEVEL)
    session.log_level = log_level if log_level in LOG_LEVELS else None
    capabilities = meta.get(versions.META_CLIENT_CAPABILITIES)
    session.client_capabilities = capabilities if isinstance(capabilities, dict) else {}
    client_info = meta.get(versions.META_CLIENT_INFO)
    session.client_info = client_info if isinstance(client_info, dict) else None
    return session


def unsupported_version_error(requested: object) -> McpError:
    """-32022, listing the versions a request's ``_meta`` may name instead."""
    return McpError(
        UNSUPPORTED_PROTOCOL_VERSION,
        f"unsupported protocol version: {requested!r}",
        {"supported": list(versions.STATELESS_VERSIONS), "requested": str(requested)},
    )


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
