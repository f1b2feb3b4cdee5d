"""One client's session with a server: the handshake, requests run in their own cancel scopes,
the client's answers to the server's questions, and the throwaway sessions of the stateless era."""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Final

import attrs
import trio

from ..protocol import _versions as versions
from ..protocol._errors import McpError
from ..protocol._messages import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    UNSUPPORTED_PROTOCOL_VERSION,
    ErrorResponse,
    JsonObject,
    Message,
    Notification,
    Request,
    RequestId,
    Response,
)
from ._context import LOG_LEVELS, CloseStream, RequestContext, SendMessage
from ._identity import ClientIdentity
from ._input_requests import InputRequired, InputRound

if TYPE_CHECKING:
    from ._server import McpServer

logger = logging.getLogger("trio_sandbox.mcp.server")

# Requests whose handlers may ask the client for input with an input_required result.
_INPUT_TARGET_KEY: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


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
    # Who the client proved to be on an authenticating face (None: the face authenticates no one).
    client_identity: ClientIdentity | None = None
    _in_flight: dict[RequestId, trio.CancelScope] = attrs.field(factory=dict)
    _client_requests: dict[RequestId, _PendingClientRequest] = attrs.field(factory=dict)
    _next_request_id: int = 0
    _closed_event: trio.Event = attrs.field(factory=trio.Event)

    @property
    def stateless(self) -> bool:
        return self.protocol_version is not None and versions.is_stateless(self.protocol_version)

    @classmethod
    def new_id(cls) -> str:
        return secrets.token_urlsafe(24)

    async def wait_closed(self) -> None:
        """Until the session ends (the client left, the transport closed, or it expired)."""
        await self._closed_event.wait()

    def close(self) -> None:
        self.closed = True
        self._closed_event.set()
        for scope in self._in_flight.values():
            scope.cancel()
        for pending in self._client_requests.values():
            pending.done.set()

    async def send_standalone(self, message: Message) -> None:
        """Send a message not tied to a request (GET stream, stdio); dropped when none is open."""
        if self._send_standalone is not None and not self.closed:
            filtered = await self.server.outgoing(message, None)
            if filtered is not None and self._send_standalone is not None and not self.closed:
                await self._send_standalone(filtered)

    def set_standalone(self, send: SendMessage | None) -> None:
        self._send_standalone = send
        if send is not None:
            self.server.watch_session(self)

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

        async def send_out(message: Message) -> None:
            # Everything of this request leaves through the server's outgoing filter.
            filtered = await self.server.outgoing(message, ctx)
            if filtered is not None:
                await send(filtered)

        ctx = RequestContext(
            self,
            request.id,
            request.method,
            meta if isinstance(meta, dict) else {},
            send_out,
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
        await send_out(response)

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


def stateless_session(
    server: McpServer, params: JsonObject | None, client_identity: ClientIdentity | None = None
) -> ServerSession:
    """The throwaway session of one stateless-era request, from its ``_meta`` envelope, of the
    client its face authenticated (``client_identity``)."""
    meta = (params or {}).get("_meta")
    meta = meta if isinstance(meta, dict) else {}
    version = meta.get(versions.META_PROTOCOL_VERSION)
    if not isinstance(version, str) or version not in versions.STATELESS_VERSIONS:
        raise unsupported_version_error(version)
    session = ServerSession(
        server, protocol_version=version, initialized=True, client_identity=client_identity
    )
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
