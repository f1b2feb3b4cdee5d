"""Input requests: asking the client for input in the middle of a request (sampling, elicitation,
roots).

In the handshake era a handler's question is a real server-to-client request on the response
stream. The stateless era (2026-07-28) has no such channel: the server answers the request with an
``input_required`` result carrying ``inputRequests`` and an opaque ``requestState``, and the client
repeats the same request with ``inputResponses`` (multi round-trip requests, SEP-2322). Handlers
see one API for both: :meth:`RequestContext.ask` returns the answers or, in the stateless era,
ends the handler with :class:`InputRequired`; the retried request replays the handler, whose
earlier questions are then answered from the (signed) request state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from ..protocol._errors import McpError
from ..protocol._jsonrpc import dumps
from ..protocol._messages import INVALID_PARAMS, MISSING_CLIENT_CAPABILITY, JsonObject

# The client capability each kind of question needs.
_CAPABILITY_OF_METHOD: Final = {
    "elicitation/create": "elicitation",
    "sampling/createMessage": "sampling",
    "roots/list": "roots",
}
_STATE_VERSION: Final = 1


@attrs.frozen
class InputRequest:
    """One question for the client: a server-to-client request without an id."""

    method: str
    params: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def elicitation(cls, message: str, requested_schema: Mapping[str, Any]) -> InputRequest:
        return cls(
            "elicitation/create", {"message": message, "requestedSchema": dict(requested_schema)}
        )

    @classmethod
    def sampling(
        cls, messages: Sequence[Mapping[str, Any]], max_tokens: int, **extra: Any
    ) -> InputRequest:
        return cls(
            "sampling/createMessage",
            {"messages": [dict(m) for m in messages], "maxTokens": max_tokens, **extra},
        )

    @classmethod
    def sampling_text(cls, prompt: str, max_tokens: int = 100) -> InputRequest:
        """Ask the client's model one question in plain text."""
        message = {"role": "user", "content": {"type": "text", "text": prompt}}
        return cls.sampling([message], max_tokens)

    @classmethod
    def roots(cls) -> InputRequest:
        return cls("roots/list", {})

    @property
    def required_capability(self) -> str | None:
        return _CAPABILITY_OF_METHOD.get(self.method)

    def to_json(self) -> JsonObject:
        return {"method": self.method, "params": dict(self.params)}


class InputRequired(Exception):
    """Ends a stateless-era handler that needs answers it does not have yet.

    Raised by :meth:`RequestContext.ask`; the server turns it into an ``input_required`` result.
    A handler must let it propagate (do not swallow it with a bare ``except Exception``).
    """

    def __init__(self, requests: Mapping[str, InputRequest]) -> None:
        super().__init__(f"input required: {', '.join(requests)}")
        self.requests = dict(requests)


def missing_capability_error(capabilities: Sequence[str]) -> McpError:
    """-32021: the request needs client capabilities that its caller did not declare."""
    return McpError(
        MISSING_CLIENT_CAPABILITY,
        f"this request needs the client capabilities: {', '.join(capabilities)}",
        {"requiredCapabilities": {name: {} for name in capabilities}},
    )


def check_input_response(request: InputRequest, response: object) -> JsonObject:
    """The client's answer to ``request``, or -32602 when it is not shaped like one."""
    ok = isinstance(response, dict)
    if ok and request.method == "elicitation/create":
        assert isinstance(response, dict)
        ok = response.get("action") in ("accept", "decline", "cancel") and isinstance(
            response.get("content", {}), dict
        )
    elif ok and request.method == "sampling/createMessage":
        assert isinstance(response, dict)
        ok = isinstance(response.get("content"), (dict, list)) and isinstance(
            response.get("role"), str
        )
    elif ok and request.method == "roots/list":
        assert isinstance(response, dict)
        ok = isinstance(response.get("roots"), list)
    if not ok:
        raise McpError(INVALID_PARAMS, f"inputResponses: not a valid {request.method} result")
    assert isinstance(response, dict)
    return response


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@attrs.frozen
class RequestStateCodec:
    """Seals the answers gathered so far into ``requestState`` so that the client cannot alter them.

    The state is bound to one request target (method and tool/prompt name) and expires. The key
    must be shared by every server instance behind one endpoint; by default each server process
    draws its own, so a retry must reach the same process.
    """

    key: bytes = attrs.field(factory=lambda: secrets.token_bytes(32))
    max_age_seconds: float = 3600.0

    def seal(self, target: str, answers: Mapping[str, Any]) -> str:
        body = dumps(
            {"v": _STATE_VERSION, "t": target, "iat": int(time.time()), "a": dict(answers)}
        )
        mac = hmac.new(self.key, body, hashlib.sha256).digest()
        return f"{_b64encode(body)}.{_b64encode(mac)}"

    def open(self, target: str, token: object) -> JsonObject:
        """The answers sealed in ``token``; -32602 when it was altered, expired or misdirected."""
        refused = McpError(INVALID_PARAMS, "requestState integrity check failed")
        if not isinstance(token, str):
            raise refused
        body_text, _, mac_text = token.partition(".")
        try:
            body = _b64decode(body_text)
            mac = _b64decode(mac_text)
        except (ValueError, binascii.Error):
            raise refused from None
        if not hmac.compare_digest(mac, hmac.new(self.key, body, hashlib.sha256).digest()):
            raise refused
        state = json.loads(body)
        if not isinstance(state, dict) or state.get("v") != _STATE_VERSION:
            raise refused
        if state.get("t") != target:
            raise McpError(INVALID_PARAMS, "requestState belongs to another request")
        issued = state.get("iat")
        if not isinstance(issued, int) or time.time() - issued > self.max_age_seconds:
            raise McpError(INVALID_PARAMS, "requestState expired; send the request again")
        answers = state.get("a")
        return answers if isinstance(answers, dict) else {}


@attrs.define(eq=False)
class InputRound:
    """What one stateless-era request brought back: earlier answers and fresh input responses."""

    sealed_answers: JsonObject = attrs.field(factory=dict)
    fresh_responses: JsonObject = attrs.field(factory=dict)
    # Answers handed to the handler during this run, in the order it asked: what the next
    # requestState must remember.
    used: JsonObject = attrs.field(factory=dict)

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], codec: RequestStateCodec, target: str
    ) -> InputRound:
        sealed: JsonObject = {}
        if params.get("requestState") is not None:
            sealed = codec.open(target, params["requestState"])
        responses = params.get("inputResponses")
        if responses is not None and not isinstance(responses, dict):
            raise McpError(INVALID_PARAMS, "inputResponses must be an object")
        return cls(sealed, dict(responses or {}))

    def answer(self, key: str, request: InputRequest) -> JsonObject | None:
        if key in self.sealed_answers:
            answer: JsonObject = self.sealed_answers[key]
        elif key in self.fresh_responses:
            answer = check_input_response(request, self.fresh_responses[key])
        else:
            return None
        self.used[key] = answer
        return answer

    def input_required_result(
        self, requests: Mapping[str, InputRequest], codec: RequestStateCodec, target: str
    ) -> JsonObject:
        return {
            "resultType": "input_required",
            "inputRequests": {key: request.to_json() for key, request in requests.items()},
            "requestState": codec.seal(target, self.used),
        }
