"""The contract between the MCP client and its transports (their errors are in
``protocol._errors``).

A leaf of the client: the client core and every transport (HTTP, WebSocket, stdio, memory)
import it; it imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeAlias

from ..protocol._errors import McpConnectionError
from ..protocol._messages import Message


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
    # Optional: False when ``headers`` go nowhere (not HTTP), so the client need not make them.
    sends_headers: bool

    async def send(self, message: Message, headers: Mapping[str, str]) -> None: ...

    def set_protocol_version(self, version: str | None) -> None: ...

    async def session_ready(self) -> None:
        """The handshake finished: open whatever carries unsolicited server messages."""
        ...


TransportFactory: TypeAlias = Callable[[ClientInbox], AbstractAsyncContextManager[ClientTransport]]
