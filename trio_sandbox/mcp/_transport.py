"""The contract between the MCP client and its transports, and the errors they raise.

A leaf of the package: the client core and every transport (HTTP, WebSocket, stdio, memory)
import it; it imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeAlias

from ._jsonrpc import Message


class McpConnectionError(Exception):
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


class ClientInbox(Protocol):
    """What a transport hands incoming messages to."""

    async def deliver(self, message: Message) -> None: ...

    def connection_lost(self, error: McpConnectionError) -> None: ...


class ClientTransport(Protocol):
    """Moves messages between a client and one server.

    ``send`` of a request returns once it is on its way; over HTTP it returns only once the
    request's response was delivered (it reads the response stream in the caller's task, so
    that cancelling the caller closes that stream). ``headers`` are the stateless era's
    per-request HTTP headers; message-oriented transports ignore them.
    """

    target: str
    # True when closing a request's response stream is that request's cancellation (HTTP in
    # the stateless era), so no notifications/cancelled needs to be sent.
    closes_stream_to_cancel: bool

    async def send(self, message: Message, headers: Mapping[str, str]) -> None: ...

    def set_protocol_version(self, version: str | None) -> None: ...

    async def session_ready(self) -> None:
        """The handshake finished: open whatever carries unsolicited server messages."""
        ...


TransportFactory: TypeAlias = Callable[[ClientInbox], AbstractAsyncContextManager[ClientTransport]]
