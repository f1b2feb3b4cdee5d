"""JSON-RPC 2.0 messages as MCP uses them: the four message values and the error codes.

MCP restricts JSON-RPC a little: ids are strings or integers (never null on a request), ``params``
is always an object, and batches exist only in protocol version 2025-03-26.
"""

from __future__ import annotations

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
MISSING_CLIENT_CAPABILITY: Final = -32021
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
