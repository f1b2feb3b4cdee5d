"""JSON-RPC 2.0 messages as MCP uses them, with a strict decoder.

MCP restricts JSON-RPC a little: ids are strings or integers (never null on a request), ``params``
is always an object, and batches exist only in protocol version 2025-03-26.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, TypeAlias

import attrs

JSONRPC_VERSION: Final = "2.0"

RequestId: TypeAlias = int | str
JsonObject: TypeAlias = dict[str, Any]

# Standard JSON-RPC error codes.
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
# MCP-specific codes.
RESOURCE_NOT_FOUND: Final = -32002
HEADER_MISMATCH: Final = -32020
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022
CONNECTION_CLOSED: Final = -32000
REQUEST_TIMEOUT: Final = -32001
# Ours (implementation-defined server error): a bound on sessions, requests or connections was
# reached; retrying later can succeed.
LIMIT_REACHED: Final = -32030


@attrs.frozen
class Request:
    id: RequestId
    method: str
    params: JsonObject | None = None


@attrs.frozen
class Notification:
    method: str
    params: JsonObject | None = None


@attrs.frozen
class Response:
    id: RequestId
    result: JsonObject


@attrs.frozen
class ErrorObject:
    code: int
    message: str
    data: Any = None


@attrs.frozen
class ErrorResponse:
    # None only when the id of the faulty request could not be read.
    id: RequestId | None
    error: ErrorObject


Message: TypeAlias = Request | Notification | Response | ErrorResponse


class McpError(Exception):
    """An error that becomes a JSON-RPC error response."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    @property
    def error(self) -> ErrorObject:
        return ErrorObject(self.code, self.message, self.data)

    def response_for(self, request_id: RequestId | None) -> ErrorResponse:
        return ErrorResponse(request_id, self.error)

    def __repr__(self) -> str:
        return f"McpError({self.code}, {self.message!r})"


class MessageDecodeError(McpError):
    """Input that is not a valid JSON-RPC message; ``request_id`` is set when it could be read."""

    def __init__(self, code: int, message: str, request_id: RequestId | None = None) -> None:
        super().__init__(code, message)
        self.request_id = request_id


def _read_id(raw: Mapping[str, Any]) -> RequestId | None:
    value = raw.get("id")
    # bool is an int subclass; JSON true is not a valid id.
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return None


def decode_message(raw: object) -> Message:
    """Turn one decoded JSON value into a message, or raise :class:`MessageDecodeError`."""
    if not isinstance(raw, dict):
        raise MessageDecodeError(INVALID_REQUEST, "a JSON-RPC message must be a JSON object")
    request_id = _read_id(raw)
    if raw.get("jsonrpc") != JSONRPC_VERSION:
        raise MessageDecodeError(INVALID_REQUEST, 'the "jsonrpc" member must be "2.0"', request_id)
    has_id = "id" in raw
    if has_id and request_id is None and raw["id"] is not None:
        raise MessageDecodeError(INVALID_REQUEST, '"id" must be a string or an integer')
    if "method" in raw:
        method = raw["method"]
        if not isinstance(method, str) or not method:
            raise MessageDecodeError(
                INVALID_REQUEST, '"method" must be a non-empty string', request_id
            )
        params = raw.get("params")
        if params is not None and not isinstance(params, dict):
            raise MessageDecodeError(INVALID_REQUEST, '"params" must be an object', request_id)
        if "result" in raw or "error" in raw:
            raise MessageDecodeError(
                INVALID_REQUEST, "a message cannot carry both a method and a result", request_id
            )
        if not has_id:
            return Notification(method, params)
        if request_id is None:
            raise MessageDecodeError(INVALID_REQUEST, 'a request "id" must not be null')
        return Request(request_id, method, params)
    if "result" in raw:
        result = raw["result"]
        if "error" in raw:
            raise MessageDecodeError(
                INVALID_REQUEST, "a response has a result or an error, not both"
            )
        if request_id is None:
            raise MessageDecodeError(INVALID_REQUEST, 'a response needs the "id" of its request')
        if not isinstance(result, dict):
            raise MessageDecodeError(INVALID_REQUEST, '"result" must be an object', request_id)
        return Response(request_id, result)
    if "error" in raw:
        error = raw["error"]
        if (
            not isinstance(error, dict)
            or not isinstance(error.get("code"), int)
            or isinstance(error.get("code"), bool)
            or not isinstance(error.get("message"), str)
        ):
            raise MessageDecodeError(
                INVALID_REQUEST, '"error" must be an object with an integer code and a message'
            )
        return ErrorResponse(
            request_id, ErrorObject(error["code"], error["message"], error.get("data"))
        )
    raise MessageDecodeError(
        INVALID_REQUEST,
        'not a request, notification or response (no "method", "result" or "error")',
    )


def parse_json(data: bytes | str) -> object:
    """Parse JSON text, raising a JSON-RPC parse error with a readable reason."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise MessageDecodeError(PARSE_ERROR, f"parse error: {reason}") from None


def encode_message(message: Message) -> JsonObject:
    match message:
        case Request(id=request_id, method=method, params=params):
            out: JsonObject = {"jsonrpc": JSONRPC_VERSION, "id": request_id, "method": method}
            if params is not None:
                out["params"] = params
            return out
        case Notification(method=method, params=params):
            out = {"jsonrpc": JSONRPC_VERSION, "method": method}
            if params is not None:
                out["params"] = params
            return out
        case Response(id=request_id, result=result):
            return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "result": result}
        case ErrorResponse(id=request_id, error=error):
            error_out: JsonObject = {"code": error.code, "message": error.message}
            if error.data is not None:
                error_out["data"] = error.data
            return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "error": error_out}
    raise TypeError(f"not a JSON-RPC message: {message!r}")


def dumps(value: object) -> bytes:
    """Compact UTF-8 JSON, the one encoding every transport here writes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def dump_message(message: Message) -> bytes:
    return dumps(encode_message(message))


# What one message may weigh on every face and transport, by default (HTTP body, WebSocket frame).
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024


def dump_bounded(message: Message, limit: int) -> bytes:
    """``message`` encoded, or an McpError when it is over ``limit``: a peer refuses such a
    message by closing the connection, which would look like a dead server."""
    data = dump_message(message)
    if len(data) > limit:
        raise McpError(
            INVALID_PARAMS,
            f"message of {len(data)} bytes is over the {limit}-byte limit of one message;"
            " it was not sent",
        )
    return data
