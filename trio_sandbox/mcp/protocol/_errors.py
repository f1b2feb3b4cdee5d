"""Every error of the MCP layer, under one root that derives from ``contract.SandboxError``.

A leaf of the package: it imports only the message values (to build error responses).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...contract import SandboxError
from ._messages import INVALID_REQUEST, ErrorObject, ErrorResponse, RequestId


class McpBaseError(SandboxError):
    """Base of every error the MCP layer raises: protocol, connection and tool errors."""


class McpError(McpBaseError):
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


class ToolError(McpBaseError):
    """Raised by a tool handler for a failure the model should read: becomes ``isError: true``."""


class McpConnectionError(McpBaseError):
    """The transport failed: the server is unreachable, died, or answered outside the protocol."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"MCP connection to {target} failed: {reason}")
        self.target = target
        self.reason = reason


class McpHttpStatusError(McpConnectionError):
    """An HTTP answer with an error status and no JSON-RPC error to go with it."""

    def __init__(self, target: str, status: int, body: bytes = b"") -> None:
        snippet = body[:200].decode("utf-8", "replace")
        super().__init__(target, f"HTTP {status}" + (f": {snippet}" if snippet else ""))
        self.status = status


class McpSessionExpired(McpConnectionError):
    """The server no longer knows the session (HTTP 404): the request did not reach a handler.

    A caller may open a new session (initialize again) and send the request once more.
    """


class HttpClientError(McpBaseError):
    """The client's HTTP exchange failed below HTTP semantics: connect, TLS, broken stream,
    protocol error (the HTTP transport turns it into :class:`McpConnectionError`)."""


class HttpRefusal(McpBaseError):
    """The server's HTTP face refuses a request with an HTTP status and a JSON-RPC error body
    (``response``; the face encodes it)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: int = INVALID_REQUEST,
        request_id: Any = None,
        data: Any = None,
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.response = ErrorResponse(request_id, McpError(code, message, data).error)
        self.headers = list(headers)
