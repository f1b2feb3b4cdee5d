"""The transport-independent MCP client, :class:`McpClient` (``._connect`` opens one).

The client probes the stateless era first (``server/discover`` with the ``_meta`` envelope) and
falls back to ``initialize`` when the server does not speak it. Transports move messages; this
module matches responses to requests, answers the server's requests with the callbacks it was
given, and turns a cancelled caller into a cancelled request on the wire.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeAlias

import attrs
import trio

from ...program import VERSION
from ..protocol import _versions as versions
from ..protocol._errors import McpBaseError, McpConnectionError, McpError, McpHttpStatusError
from ..protocol._headers import encode_header_value, header_parameters
from ..protocol._messages import (
    INTERNAL_ERROR,
    METHOD_NOT_FOUND,
    UNSUPPORTED_PROTOCOL_VERSION,
    ErrorResponse,
    JsonObject,
    Message,
    Notification,
    Request,
    RequestId,
    Response,
)
from ..protocol._types import (
    CallToolResult,
    Implementation,
    Prompt,
    Resource,
    ResourceContents,
    ResourceTemplate,
    Tool,
    content_from_json,
)
from ._pending import PendingRequest
from ._transport import ClientTransport

logger = logging.getLogger("trio_sandbox.mcp.client")

ServerRequestHandler: TypeAlias = Callable[[JsonObject], Awaitable[JsonObject]]
NotificationHandler: TypeAlias = Callable[[Notification], Awaitable[None]]
ProgressCallback: TypeAlias = Callable[[float, float | None, str | None], Awaitable[None]]

DEFAULT_CLIENT_INFO: Final = Implementation("trio-sandbox-mcp-client", VERSION)
# Bounds a server that keeps answering "input required" (stateless-era multi-round requests).
_MAX_INPUT_ROUNDS: Final = 16
_CANCEL_NOTICE_TIMEOUT: Final = 5.0
# Bounds the notifications waiting for a slow handler before further ones are dropped.
_MAX_QUEUED_NOTES: Final = 1024


@attrs.define(eq=False)
class McpClient:
    """A connected MCP client. Get one from :func:`open_mcp_client`."""

    target: str
    client_info: Implementation
    capabilities: JsonObject
    _nursery: trio.Nursery
    _sampling: ServerRequestHandler | None = None
    _elicitation: ServerRequestHandler | None = None
    _roots: ServerRequestHandler | None = None
    _on_notification: NotificationHandler | None = None
    _transport: ClientTransport | None = None
    protocol_version: str = versions.LATEST_VERSION
    server_info: Implementation | None = None
    server_capabilities: JsonObject = attrs.field(factory=dict)
    instructions: str | None = None
    _next_id: int = 0
    _pending: dict[RequestId, PendingRequest] = attrs.field(factory=dict)
    _progress: dict[str | int, tuple[PendingRequest, ProgressCallback]] = attrs.field(factory=dict)
    # Notifications for the on_notification callback that arrived outside a request's task.
    _notifications: tuple[
        trio.MemorySendChannel[Notification], trio.MemoryReceiveChannel[Notification]
    ] = attrs.field(factory=lambda: trio.open_memory_channel[Notification](_MAX_QUEUED_NOTES))
    # Tasks sending a request right now: what arrives in them is theirs to handle inline.
    _requesting: dict[trio.lowlevel.Task, int] = attrs.field(factory=dict)
    _server_requests: dict[RequestId, trio.CancelScope] = attrs.field(factory=dict)
    _header_params: dict[str, dict[str, str]] = attrs.field(factory=dict)
    _lost: McpConnectionError | None = None
    cancel_notifications_sent: int = 0

    @property
    def stateless(self) -> bool:
        return versions.is_stateless(self.protocol_version)

    # --- the inbox side ---------------------------------------------------------------------

    async def deliver(self, message: Message) -> None:
        if isinstance(message, (Response, ErrorResponse)):
            pending = self._pending.get(message.id) if message.id is not None else None
            if pending is None:
                logger.debug("dropping a response to unknown request %r", message.id)
                return
            pending.settle(message)
        elif isinstance(message, Request):
            self._nursery.start_soon(self._serve_server_request, message)
        else:
            await self._handle_notification(message)

    def connection_lost(self, error: McpConnectionError) -> None:
        self._lost = error
        for pending in self._pending.values():
            pending.settle(error)

    async def _handle_notification(self, note: Notification) -> None:
        params = note.params or {}
        if note.method == "notifications/progress":
            entry = self._progress.get(params.get("progressToken"))  # type: ignore[arg-type]
            progress = params.get("progress")
            if entry is not None and isinstance(progress, (int, float)):
                pending, callback = entry
                total = params.get("total")
                message = params.get("message")
                await pending.run_or_queue(
                    functools.partial(
                        callback,
                        float(progress),
                        float(total) if isinstance(total, (int, float)) else None,
                        message if isinstance(message, str) else None,
                    )
                )
            return
        if note.method == "notifications/cancelled":
            scope = self._server_requests.get(params.get("requestId"))  # type: ignore[arg-type]
            if scope is not None:
                scope.cancel()
            return
        if self._on_notification is None:
            return
        if trio.lowlevel.current_task() in self._requesting:
            # Delivered in a request's own task (over HTTP): its own stream waits for it.
            await self._on_notification(note)
            return
        try:
            self._notifications[0].send_nowait(note)
        except trio.WouldBlock:
            logger.warning(
                "dropping %s from %s: its handler falls behind", note.method, self.target
            )

    async def serve_notifications(self) -> None:
        """Run ``on_notification`` for what arrived outside requests, in order, in one task of
        the client's own: a slow handler never holds up the reader delivering answers."""
        assert self._on_notification is not None
        async for note in self._notifications[1]:
            await self._on_notification(note)

    async def _serve_server_request(self, request: Request) -> None:
        with trio.CancelScope() as scope:
            self._server_requests[request.id] = scope
            try:
                answer: Message = Response(
                    request.id, await self.answer_server_request(request.method, request.params)
                )
            except McpError as exc:
                answer = exc.response_for(request.id)
            except Exception as exc:
                logger.exception("handling the server's %s failed", request.method)
                answer = ErrorResponse(
                    request.id, McpError(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}").error
                )
            finally:
                del self._server_requests[request.id]
            try:
                await self._require_transport().send(answer, {})
            except McpConnectionError as exc:
                logger.warning("could not answer the server's %s: %s", request.method, exc)

    async def answer_server_request(self, method: str, params: JsonObject | None) -> JsonObject:
        """The answer to a request from the server (sampling, elicitation, roots, ping)."""
        handler = {
            "sampling/createMessage": self._sampling,
            "elicitation/create": self._elicitation,
            "roots/list": self._roots,
        }.get(method)
        if method == "ping":
            return {}
        if handler is None:
            raise McpError(METHOD_NOT_FOUND, f"this client does not handle {method}")
        return await handler(params or {})

    # --- requests -----------------------------------------------------------------------------

    def _require_transport(self) -> ClientTransport:
        if self._transport is None:
            raise RuntimeError("the client is not connected")
        return self._transport

    def _envelope(self, params: JsonObject | None, version: str) -> JsonObject:
        out = dict(params or {})
        meta = dict(out.get("_meta") or {})
        meta[versions.META_PROTOCOL_VERSION] = version
        meta[versions.META_CLIENT_INFO] = self.client_info.to_json()
        meta[versions.META_CLIENT_CAPABILITIES] = self.capabilities
        out["_meta"] = meta
        return out

    def _stateless_headers(self, method: str, params: JsonObject) -> dict[str, str]:
        headers = {"Mcp-Method": method}
        key = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}.get(method)
        if method.startswith("tasks/"):
            key = "taskId"
        target = params.get(key) if key is not None else None
        if isinstance(target, str):
            encoded = encode_header_value(target)
            if encoded is not None:
                headers["Mcp-Name"] = encoded
        if method == "tools/call" and isinstance(target, str):
            arguments = params.get("arguments")
            mapping = self._header_params.get(target, {})
            if isinstance(arguments, Mapping):
                for parameter, header in mapping.items():
                    value = encode_header_value(arguments.get(parameter))
                    if value is not None:
                        headers[f"Mcp-Param-{header}"] = value
        return headers

    async def _roundtrip(
        self,
        method: str,
        params: JsonObject | None,
        *,
        progress: ProgressCallback | None = None,
        version: str | None = None,
    ) -> JsonObject:
        """Send one request and wait for its result; raise McpError for a JSON-RPC error."""
        if self._lost is not None:
            raise self._lost
        transport = self._require_transport()
        request_id = self._next_id
        self._next_id += 1
        version = version or self.protocol_version
        stateless = versions.is_stateless(version)
        params = dict(params or {}) if (params or progress or stateless) else None
        token = f"progress-{request_id}"
        if progress is not None:
            assert params is not None
            params["_meta"] = {**(params.get("_meta") or {}), "progressToken": token}
        headers: dict[str, str] = {}
        if stateless:
            params = self._envelope(params, version)
            # A transport of the embedder's own may predate the attribute: it gets headers.
            if getattr(transport, "sends_headers", True):
                headers = self._stateless_headers(method, params)
        pending = PendingRequest()
        self._pending[request_id] = pending
        if progress is not None:
            self._progress[token] = (pending, progress)
        task = trio.lowlevel.current_task()
        self._requesting[task] = self._requesting.get(task, 0) + 1
        refused = False
        try:
            with pending.scope:
                pending.sending = True
                try:
                    await transport.send(Request(request_id, method, params), headers)
                except McpHttpStatusError:
                    refused = True  # an HTTP error status: nothing runs there to cancel
                    raise
                except Exception as exc:
                    # Not the transport's: the auth hook's own error (a login is needed), so
                    # the request was never accepted, and a notice would only meet it again.
                    refused = not isinstance(exc, McpBaseError)
                    raise
                pending.sending = False
                # Message channels return once the request is written: wait for its answer.
                await pending.wait_answer()
        finally:
            if self._requesting[task] == 1:
                del self._requesting[task]
            else:
                self._requesting[task] -= 1
            del self._pending[request_id]
            self._progress.pop(token, None)
            if not pending.answered and self._lost is None and not refused:
                await self._send_cancel(request_id, stateless)
        outcome = pending.outcome
        if isinstance(outcome, Response):
            return outcome.result
        if isinstance(outcome, ErrorResponse):
            raise McpError(outcome.error.code, outcome.error.message, outcome.error.data)
        assert outcome is not None
        raise outcome

    async def _send_cancel(self, request_id: RequestId, stateless: bool) -> None:
        # In the stateless era the closed response stream is the cancellation (HTTP). Duplex
        # transports have no stream to close, so they always say it.
        if stateless and self._require_transport().closes_stream_to_cancel:
            return
        note = Notification(
            "notifications/cancelled", {"requestId": request_id, "reason": "cancelled by caller"}
        )
        self.cancel_notifications_sent += 1
        with trio.CancelScope(shield=True), trio.move_on_after(_CANCEL_NOTICE_TIMEOUT):
            try:
                await self._require_transport().send(note, {"Mcp-Method": note.method})
            except McpConnectionError as exc:
                logger.debug("could not send notifications/cancelled: %s", exc)

    async def request(
        self,
        method: str,
        params: JsonObject | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> JsonObject:
        """Send a request and return its result, answering any input the server asks for first."""
        result = await self._roundtrip(method, params, progress=progress)
        rounds = 0
        while result.get("resultType") == "input_required":
            rounds += 1
            if rounds > _MAX_INPUT_ROUNDS:
                raise McpError(INTERNAL_ERROR, f"{method}: the server keeps asking for input")
            retry = dict(params or {})
            retry["inputResponses"] = await self._answer_inputs(result.get("inputRequests"))
            retry.pop("requestState", None)
            if "requestState" in result:
                retry["requestState"] = result["requestState"]
            result = await self._roundtrip(method, retry, progress=progress)
        return result

    async def _answer_inputs(self, requests: object) -> JsonObject:
        answers: JsonObject = {}
        if not isinstance(requests, Mapping):
            return answers
        for key, asked in requests.items():
            if not isinstance(asked, Mapping) or not isinstance(asked.get("method"), str):
                continue
            params = asked.get("params")
            answers[key] = await self.answer_server_request(
                asked["method"], params if isinstance(params, dict) else None
            )
        return answers

    async def notify(self, method: str, params: JsonObject | None = None) -> None:
        if self.stateless:
            params = self._envelope(params, self.protocol_version)
        await self._require_transport().send(Notification(method, params), {"Mcp-Method": method})

    # --- connecting ---------------------------------------------------------------------------

    async def _connect(self, pinned: str | None) -> None:
        transport = self._require_transport()
        if pinned is None or versions.is_stateless(pinned):
            version = pinned or versions.LATEST_VERSION
            if await self._discover(version, pinned is not None):
                return
        transport.set_protocol_version(None)
        await self._initialize(pinned or versions.LATEST_HANDSHAKE_VERSION)

    async def _discover(self, version: str, pinned: bool) -> bool:
        """Try the stateless era; False means the server wants the handshake instead."""
        transport = self._require_transport()
        for _attempt in range(2):
            transport.set_protocol_version(version)
            self.protocol_version = version
            try:
                result = await self._roundtrip("server/discover", None, version=version)
            except McpError as exc:
                supported = exc.data.get("supported") if isinstance(exc.data, dict) else None
                if exc.code == UNSUPPORTED_PROTOCOL_VERSION and isinstance(supported, list):
                    usable = [v for v in versions.STATELESS_VERSIONS if v in supported]
                    if usable:
                        version = usable[-1]
                        continue
                if pinned and exc.code == METHOD_NOT_FOUND:
                    return True  # a stateless server without discover: nothing more to learn
                if pinned:
                    raise
                return False
            except McpHttpStatusError as exc:
                # 401/403 is about authorization, not the era: initialize would meet it too.
                if pinned or not 400 <= exc.status < 500 or exc.status in (401, 403):
                    raise
                return False
            supported = result.get("supportedVersions")
            if not pinned and not (isinstance(supported, list) and version in supported):
                return False  # an answer, but not a modern one
            self._learn_server(result)
            return True
        return False

    def _learn_server(self, result: JsonObject) -> None:
        capabilities = result.get("capabilities")
        self.server_capabilities = capabilities if isinstance(capabilities, dict) else {}
        info = result.get("serverInfo")
        meta = result.get("_meta")
        if isinstance(meta, dict) and isinstance(meta.get(versions.META_SERVER_INFO), dict):
            info = meta[versions.META_SERVER_INFO]
        if isinstance(info, dict) and isinstance(info.get("name"), str):
            version = info.get("version")
            title = info.get("title")
            self.server_info = Implementation(
                info["name"],
                version if isinstance(version, str) else "",
                title if isinstance(title, str) else None,
            )
        instructions = result.get("instructions")
        self.instructions = instructions if isinstance(instructions, str) else None

    async def _initialize(self, version: str) -> None:
        self.protocol_version = version
        result = await self._roundtrip(
            "initialize",
            {
                "protocolVersion": version,
                "capabilities": self.capabilities,
                "clientInfo": self.client_info.to_json(),
            },
        )
        agreed = result.get("protocolVersion")
        if agreed not in versions.HANDSHAKE_VERSIONS:
            raise McpConnectionError(
                self.target, f"the server offered unsupported protocol version {agreed!r}"
            )
        assert isinstance(agreed, str)
        self.protocol_version = agreed
        self._learn_server(result)
        transport = self._require_transport()
        transport.set_protocol_version(agreed)
        await self.notify("notifications/initialized")
        await transport.session_ready()

    # --- MCP methods --------------------------------------------------------------------------

    async def ping(self) -> None:
        """A liveness check: ``ping``, or ``server/discover`` in the stateless era (no ping)."""
        await self.request("server/discover" if self.stateless else "ping")

    async def _list_all(self, method: str, key: str) -> list[Any]:
        items: list[Any] = []
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            result = await self.request(method, {"cursor": cursor} if cursor else None)
            page = result.get(key)
            if isinstance(page, list):
                items.extend(page)
            next_cursor = result.get("nextCursor")
            if not isinstance(next_cursor, str) or not next_cursor or next_cursor in seen:
                return items
            seen.add(next_cursor)
            cursor = next_cursor

    async def list_tools(self) -> list[Tool]:
        """Every tool, across pages, minus those with invalid ``x-mcp-header`` annotations."""
        tools: list[Tool] = []
        for raw in await self._list_all("tools/list", "tools"):
            tool = Tool.from_json(raw)
            mapping = header_parameters(tool)
            if mapping is None:
                logger.warning("ignoring tool %r: invalid x-mcp-header annotation", tool.name)
                continue
            self._header_params[tool.name] = mapping
            tools.append(tool)
        return tools

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        progress: ProgressCallback | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> CallToolResult:
        params: JsonObject = {"name": name, "arguments": dict(arguments or {})}
        if meta:
            params["_meta"] = dict(meta)
        result = await self.request("tools/call", params, progress=progress)
        return CallToolResult.from_json(result)

    async def list_resources(self) -> list[Resource]:
        return [
            Resource.from_json(raw) for raw in await self._list_all("resources/list", "resources")
        ]

    async def list_resource_templates(self) -> list[ResourceTemplate]:
        listed = await self._list_all("resources/templates/list", "resourceTemplates")
        return [ResourceTemplate.from_json(raw) for raw in listed]

    async def read_resource(
        self, uri: str, *, meta: Mapping[str, Any] | None = None
    ) -> list[ResourceContents]:
        params: JsonObject = {"uri": uri}
        if meta:
            params["_meta"] = dict(meta)
        result = await self.request("resources/read", params)
        contents = result.get("contents")
        return [
            ResourceContents.from_json(item)
            for item in (contents if isinstance(contents, list) else [])
            if isinstance(item, dict)
        ]

    async def list_prompts(self) -> list[Prompt]:
        return [Prompt.from_json(raw) for raw in await self._list_all("prompts/list", "prompts")]

    async def get_prompt(self, name: str, arguments: Mapping[str, str] | None = None) -> JsonObject:
        """The raw prompts/get result (``messages`` with content, optional ``description``)."""
        result = await self.request(
            "prompts/get", {"name": name, "arguments": dict(arguments or {})}
        )
        for message in result.get("messages") or []:
            if isinstance(message, dict):
                content_from_json(message.get("content"))  # validates the shape
        return result
