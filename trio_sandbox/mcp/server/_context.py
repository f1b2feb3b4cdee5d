"""The context a request handler gets: where its notifications, questions and answers go."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import attrs
import trio

from ...concurrency import single_error
from ..protocol import _versions as versions
from ..protocol._messages import JsonObject, Message, Notification, RequestId
from ._identity import ClientIdentity
from ._input_requests import InputRequest, InputRequired, InputRound, missing_capability_error

if TYPE_CHECKING:
    from ._server import McpServer
    from ._session import ServerSession

SendMessage: TypeAlias = Callable[[Message], Awaitable[None]]
# What a server lets leave towards its client: the message (changed or not), or None for nothing.
OutgoingFilter: TypeAlias = Callable[[Message, "RequestContext | None"], Awaitable[Message | None]]
# Ends the HTTP response stream of a request while the request goes on (SSE polling).
CloseStream: TypeAlias = Callable[[], Awaitable[bool]]

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
    def client_identity(self) -> ClientIdentity | None:
        """Who the client proved to be (its certificate or token); None on a face that
        authenticates no one (stdio, in-process, plain HTTP on loopback)."""
        return self.session.client_identity

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
