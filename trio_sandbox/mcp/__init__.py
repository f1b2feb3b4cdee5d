"""The Model Context Protocol: an SDK in three rooms.

- ``protocol/``: what both sides agree on (JSON-RPC messages, MCP types, versions, HTTP header
  names, every MCP error under :class:`McpBaseError`, a ``contract.SandboxError``).
- ``server/``: :class:`McpServer`, its sessions and method table, serving a message channel or
  stdio; ``server/http/`` is the HTTP face (ASGI app, SSE, WebSocket, hypercorn).
- ``client/``: :func:`open_mcp_client`, :class:`McpClient` and the transports (HTTP, WebSocket,
  stdio, in-process memory).

This module exports what a user of the SDK needs; :mod:`trio_sandbox.mcp.lowlevel` holds what
only the other layers of trio_sandbox use. This layer knows nothing of sandboxes. The client side
loads on first use, so that a server alone (the tool server in the sandbox) never imports the
HTTP client or trio-websocket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..program import lazy_exports
from .protocol import CONNECTION_CLOSED as CONNECTION_CLOSED
from .protocol import HANDSHAKE_VERSIONS as HANDSHAKE_VERSIONS
from .protocol import HEADER_MISMATCH as HEADER_MISMATCH
from .protocol import INTERNAL_ERROR as INTERNAL_ERROR
from .protocol import INVALID_PARAMS as INVALID_PARAMS
from .protocol import INVALID_REQUEST as INVALID_REQUEST
from .protocol import LATEST_HANDSHAKE_VERSION as LATEST_HANDSHAKE_VERSION
from .protocol import LATEST_VERSION as LATEST_VERSION
from .protocol import LIMIT_REACHED as LIMIT_REACHED
from .protocol import METHOD_NOT_FOUND as METHOD_NOT_FOUND
from .protocol import MISSING_CLIENT_CAPABILITY as MISSING_CLIENT_CAPABILITY
from .protocol import PARSE_ERROR as PARSE_ERROR
from .protocol import RESOURCE_NOT_FOUND as RESOURCE_NOT_FOUND
from .protocol import STATELESS_VERSIONS as STATELESS_VERSIONS
from .protocol import SUPPORTED_VERSIONS as SUPPORTED_VERSIONS
from .protocol import UNSUPPORTED_PROTOCOL_VERSION as UNSUPPORTED_PROTOCOL_VERSION
from .protocol import AudioContent as AudioContent
from .protocol import CallToolResult as CallToolResult
from .protocol import Content as Content
from .protocol import EmbeddedResource as EmbeddedResource
from .protocol import ErrorObject as ErrorObject
from .protocol import ErrorResponse as ErrorResponse
from .protocol import GetPromptResult as GetPromptResult
from .protocol import ImageContent as ImageContent
from .protocol import Implementation as Implementation
from .protocol import JsonObject as JsonObject
from .protocol import McpBaseError as McpBaseError
from .protocol import McpConnectionError as McpConnectionError
from .protocol import McpError as McpError
from .protocol import McpHttpStatusError as McpHttpStatusError
from .protocol import McpSessionExpired as McpSessionExpired
from .protocol import Message as Message
from .protocol import Notification as Notification
from .protocol import OtherContent as OtherContent
from .protocol import Prompt as Prompt
from .protocol import PromptArgument as PromptArgument
from .protocol import PromptMessage as PromptMessage
from .protocol import Request as Request
from .protocol import RequestId as RequestId
from .protocol import Resource as Resource
from .protocol import ResourceContents as ResourceContents
from .protocol import ResourceLink as ResourceLink
from .protocol import ResourceTemplate as ResourceTemplate
from .protocol import Response as Response
from .protocol import TextContent as TextContent
from .protocol import Tool as Tool
from .protocol import ToolError as ToolError
from .protocol import content_from_json as content_from_json
from .server import ClientIdentity as ClientIdentity
from .server import IdentityKind as IdentityKind
from .server import InputRequest as InputRequest
from .server import InputRequired as InputRequired
from .server import McpServer as McpServer
from .server import OutgoingFilter as OutgoingFilter
from .server import RequestContext as RequestContext
from .server import ToolHandler as ToolHandler
from .server import ToolReturn as ToolReturn
from .server import serve_duplex as serve_duplex
from .server import serve_stdio as serve_stdio
from .server.http import BoundServer as BoundServer
from .server.http import HttpSettings as HttpSettings
from .server.http import McpHttpApp as McpHttpApp
from .server.http import serve_http as serve_http

if TYPE_CHECKING:
    from .client import AuthChallenge as AuthChallenge
    from .client import ClientInbox as ClientInbox
    from .client import ClientTransport as ClientTransport
    from .client import HttpAuth as HttpAuth
    from .client import McpClient as McpClient
    from .client import NotificationHandler as NotificationHandler
    from .client import ProgressCallback as ProgressCallback
    from .client import ServerRequestHandler as ServerRequestHandler
    from .client import TransportFactory as TransportFactory
    from .client import http_transport as http_transport
    from .client import memory_transport as memory_transport
    from .client import open_mcp_client as open_mcp_client
    from .client import stdio_transport as stdio_transport
    from .client import websocket_transport as websocket_transport

# The client side, loaded on first use: name -> module.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AuthChallenge": ".client",
        "ClientInbox": ".client",
        "ClientTransport": ".client",
        "HttpAuth": ".client",
        "McpClient": ".client",
        "NotificationHandler": ".client",
        "ProgressCallback": ".client",
        "ServerRequestHandler": ".client",
        "TransportFactory": ".client",
        "http_transport": ".client",
        "memory_transport": ".client",
        "open_mcp_client": ".client",
        "stdio_transport": ".client",
        "websocket_transport": ".client",
    },
)
