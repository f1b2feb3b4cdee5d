"""The JSON-RPC codec: a strict decoder, the one encoding every transport writes, the bound on
one message, and the in-process copy that stands in for an encode/decode in one process."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from ._errors import McpError, MessageDecodeError
from ._messages import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    JSONRPC_VERSION,
    PARSE_ERROR,
    ErrorObject,
    ErrorResponse,
    JsonObject,
    Message,
    Notification,
    Request,
    RequestId,
    Response,
)


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
    _check_bound(len(data), limit)
    return data


def _check_bound(size: int, limit: int) -> None:
    if size > limit:
        raise McpError(
            INVALID_PARAMS,
            f"message of {size} bytes is over the {limit}-byte limit of one message;"
            " it was not sent",
        )


def copy_message(message: Message, limit: int | None = None) -> Message:
    """What encoding ``message`` and decoding it again gives, without the JSON text: a copy that
    shares no mutable value with ``message`` (dicts and lists are new; tuples become lists), for a
    channel whose two ends are in one process. A value JSON cannot encode fails as encoding would;
    over ``limit`` encoded bytes, it fails as :func:`dump_bounded` does."""
    size = [0]  # an upper bound of the encoded size, in bytes
    copied: Message
    match message:
        case Request(id=request_id, method=method, params=params):
            copied = Request(request_id, method, None if params is None else _copy(params, size))
        case Notification(method=method, params=params):
            copied = Notification(method, None if params is None else _copy(params, size))
        case Response(id=request_id, result=result):
            copied = Response(request_id, _copy(result, size))
        case ErrorResponse(id=request_id, error=error):
            data = _copy(error.data, size)
            copied = ErrorResponse(request_id, ErrorObject(error.code, error.message, data))
        case _:
            raise TypeError(f"not a JSON-RPC message: {message!r}")
    # The envelope (jsonrpc, id, method, error code and message) is small; only a message whose
    # bound passes the limit is encoded, to weigh it exactly.
    if limit is not None and size[0] + _ENVELOPE_BOUND > limit:
        _check_bound(len(dump_message(message)), limit)
    return copied


_ENVELOPE_BOUND: Final = 1024
# The longest float repr (-1.7976931348623157e+308) and literal (false).
_FLOAT_BOUND: Final = 24
_LITERAL_BOUND: Final = 5


def _copy(value: Any, size: list[int]) -> Any:
    # Exact types only: a subclass (an IntEnum, a str subclass, an OrderedDict) goes through JSON,
    # which turns it into its plain value as the peer would have seen it.
    kind = type(value)
    if kind is str:
        size[0] += 6 * len(value) + 3  # every character escaped as \uXXXX, quotes, comma
        return value
    if kind is dict:
        copied: dict[str, Any] = {}
        size[0] += 2
        for key, item in value.items():
            if type(key) is not str:
                return _through_json(value, size)
            size[0] += 6 * len(key) + 4
            copied[key] = _copy(item, size)
        return copied
    if kind is list or kind is tuple:
        size[0] += 2
        return [_copy(item, size) for item in value]
    if kind is int:
        size[0] += value.bit_length() // 3 + 3  # digits, sign, comma
        return value
    if kind is float:
        size[0] += _FLOAT_BOUND + 1
        return value
    if value is None or kind is bool:
        size[0] += _LITERAL_BOUND + 1
        return value
    return _through_json(value, size)


def _through_json(value: Any, size: list[int]) -> Any:
    text = dumps(value)
    size[0] += len(text) + 1
    return json.loads(text)
