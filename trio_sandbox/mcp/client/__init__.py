"""The client room: :func:`open_mcp_client`, :class:`McpClient`, and the transports.

The client core (``_client``, with ``_pending`` for one request waiting for its answer) speaks to
a server through a transport (the contract: ``_transport``): Streamable HTTP (``_http``, on the
small h11 client ``_http11``), WebSocket (``_websocket``), stdio (``_stdio``) and the in-process
memory transport (``_memory``); the last three share the message-channel client (``_duplex``).
``_connect`` opens a transport and runs the handshake. The transports load on first use, so that
a client of one transport does not import the others' libraries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...program import lazy_exports
from ._auth import AuthChallenge as AuthChallenge
from ._auth import HttpAuth as HttpAuth
from ._client import McpClient as McpClient
from ._client import NotificationHandler as NotificationHandler
from ._client import ProgressCallback as ProgressCallback
from ._client import ServerRequestHandler as ServerRequestHandler
from ._connect import open_mcp_client as open_mcp_client
from ._transport import ClientInbox as ClientInbox
from ._transport import ClientTransport as ClientTransport
from ._transport import TransportFactory as TransportFactory

if TYPE_CHECKING:
    from ._http import http_transport as http_transport
    from ._memory import memory_transport as memory_transport
    from ._stdio import stdio_transport as stdio_transport
    from ._websocket import websocket_transport as websocket_transport

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "http_transport": "._http",
        "memory_transport": "._memory",
        "stdio_transport": "._stdio",
        "websocket_transport": "._websocket",
    },
)
