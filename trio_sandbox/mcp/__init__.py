"""The Model Context Protocol: messages, server and client cores, and transports.

This layer knows nothing of sandboxes. The client side (``open_mcp_client`` and its transports)
loads on first use, so that a server alone (the tool server in the sandbox) never imports httpx
or trio-websocket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..program import lazy_exports
from ._asgi import HttpRefusal as HttpRefusal
from ._asgi import HttpSettings as HttpSettings
from ._context import LOG_LEVELS as LOG_LEVELS
from ._context import OutgoingFilter as OutgoingFilter
from ._context import RequestContext as RequestContext
from ._duplex import serve_duplex as serve_duplex
from ._http_app import McpHttpApp as McpHttpApp
from ._hypercorn import BoundServer as BoundServer
from ._hypercorn import serve_http as serve_http
from ._jsonrpc import CONNECTION_CLOSED as CONNECTION_CLOSED
from ._jsonrpc import HEADER_MISMATCH as HEADER_MISMATCH
from ._jsonrpc import INTERNAL_ERROR as INTERNAL_ERROR
from ._jsonrpc import INVALID_PARAMS as INVALID_PARAMS
from ._jsonrpc import INVALID_REQUEST as INVALID_REQUEST
from ._jsonrpc import LIMIT_REACHED as LIMIT_REACHED
from ._jsonrpc import METHOD_NOT_FOUND as METHOD_NOT_FOUND
from ._jsonrpc import PARSE_ERROR as PARSE_ERROR
from ._jsonrpc import RESOURCE_NOT_FOUND as RESOURCE_NOT_FOUND
from ._jsonrpc import UNSUPPORTED_PROTOCOL_VERSION as UNSUPPORTED_PROTOCOL_VERSION
from ._jsonrpc import ErrorObject as ErrorObject
from ._jsonrpc import ErrorResponse as ErrorResponse
from ._jsonrpc import JsonObject as JsonObject
from ._jsonrpc import McpError as McpError
from ._jsonrpc import Message as Message
from ._jsonrpc import MessageDecodeError as MessageDecodeError
from ._jsonrpc import Notification as Notification
from ._jsonrpc import Request as Request
from ._jsonrpc import RequestId as RequestId
from ._jsonrpc import Response as Response
from ._jsonrpc import decode_message as decode_message
from ._jsonrpc import dump_message as dump_message
from ._jsonrpc import encode_message as encode_message
from ._jsonrpc import parse_json as parse_json
from ._listing import CACHEABLE_LISTINGS as CACHEABLE_LISTINGS
from ._listing import HANDSHAKE_ONLY_METHODS as HANDSHAKE_ONLY_METHODS
from ._listing import LIST_RESULT_KEYS as LIST_RESULT_KEYS
from ._listing import CacheHint as CacheHint
from ._listing import match_uri_template as match_uri_template
from ._listing import paginate as paginate
from ._listing import string_param as string_param
from ._memory import memory_transport as memory_transport
from ._mrtr import MISSING_CLIENT_CAPABILITY as MISSING_CLIENT_CAPABILITY
from ._mrtr import InputRequest as InputRequest
from ._mrtr import InputRequired as InputRequired
from ._mrtr import RequestStateCodec as RequestStateCodec
from ._registry import ToolError as ToolError
from ._registry import ToolHandler as ToolHandler
from ._registry import ToolReturn as ToolReturn
from ._server import McpServer as McpServer
from ._server import MethodHandler as MethodHandler
from ._session import ServerSession as ServerSession
from ._types import AudioContent as AudioContent
from ._types import CallToolResult as CallToolResult
from ._types import Content as Content
from ._types import EmbeddedResource as EmbeddedResource
from ._types import GetPromptResult as GetPromptResult
from ._types import ImageContent as ImageContent
from ._types import Implementation as Implementation
from ._types import OtherContent as OtherContent
from ._types import Prompt as Prompt
from ._types import PromptArgument as PromptArgument
from ._types import PromptMessage as PromptMessage
from ._types import Resource as Resource
from ._types import ResourceContents as ResourceContents
from ._types import ResourceLink as ResourceLink
from ._types import ResourceTemplate as ResourceTemplate
from ._types import TextContent as TextContent
from ._types import Tool as Tool
from ._types import content_from_json as content_from_json
from ._versions import HANDSHAKE_VERSIONS as HANDSHAKE_VERSIONS
from ._versions import LATEST_HANDSHAKE_VERSION as LATEST_HANDSHAKE_VERSION
from ._versions import LATEST_VERSION as LATEST_VERSION
from ._versions import META_LOG_LEVEL as META_LOG_LEVEL
from ._versions import META_PROTOCOL_VERSION as META_PROTOCOL_VERSION
from ._versions import META_RESERVED_PREFIX as META_RESERVED_PREFIX
from ._versions import STATELESS_VERSIONS as STATELESS_VERSIONS
from ._versions import SUPPORTED_VERSIONS as SUPPORTED_VERSIONS
from ._versions import has_resource_links as has_resource_links
from ._versions import is_stateless as is_stateless

if TYPE_CHECKING:
    from ._client import McpClient as McpClient
    from ._client import NotificationHandler as NotificationHandler
    from ._client import ProgressCallback as ProgressCallback
    from ._client import ServerRequestHandler as ServerRequestHandler
    from ._connect import open_mcp_client as open_mcp_client
    from ._http_client import http_transport as http_transport
    from ._stdio import serve_stdio as serve_stdio
    from ._stdio import stdio_transport as stdio_transport
    from ._transport import ClientInbox as ClientInbox
    from ._transport import ClientTransport as ClientTransport
    from ._transport import McpConnectionError as McpConnectionError
    from ._transport import McpHttpStatusError as McpHttpStatusError
    from ._transport import McpSessionExpired as McpSessionExpired
    from ._transport import TransportFactory as TransportFactory
    from ._ws_client import websocket_transport as websocket_transport

# Name -> module of the names loaded on first use.
_LAZY_NAMES: dict[str, str] = {
    "ClientInbox": "._transport",
    "ClientTransport": "._transport",
    "McpClient": "._client",
    "NotificationHandler": "._client",
    "ProgressCallback": "._client",
    "ServerRequestHandler": "._client",
    "McpConnectionError": "._transport",
    "McpHttpStatusError": "._transport",
    "McpSessionExpired": "._transport",
    "TransportFactory": "._transport",
    "open_mcp_client": "._connect",
    "http_transport": "._http_client",
    "serve_stdio": "._stdio",
    "stdio_transport": "._stdio",
    "websocket_transport": "._ws_client",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_NAMES)
