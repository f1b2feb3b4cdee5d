"""The Model Context Protocol: messages, server and client cores, and transports.

This layer knows nothing of sandboxes. The client side (``open_mcp_client`` and its transports)
loads on first use, so that a server alone (the tool server in the sandbox) never imports httpx
or trio-websocket.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._duplex import serve_duplex as serve_duplex
from ._http_server import BoundServer as BoundServer
from ._http_server import HttpSettings as HttpSettings
from ._http_server import McpHttpApp as McpHttpApp
from ._http_server import serve_http as serve_http
from ._jsonrpc import CONNECTION_CLOSED as CONNECTION_CLOSED
from ._jsonrpc import HEADER_MISMATCH as HEADER_MISMATCH
from ._jsonrpc import INTERNAL_ERROR as INTERNAL_ERROR
from ._jsonrpc import INVALID_PARAMS as INVALID_PARAMS
from ._jsonrpc import INVALID_REQUEST as INVALID_REQUEST
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
from ._mrtr import MISSING_CLIENT_CAPABILITY as MISSING_CLIENT_CAPABILITY
from ._mrtr import InputRequest as InputRequest
from ._mrtr import InputRequired as InputRequired
from ._mrtr import RequestStateCodec as RequestStateCodec
from ._server import CacheHint as CacheHint
from ._server import McpServer as McpServer
from ._server import RequestContext as RequestContext
from ._server import ServerSession as ServerSession
from ._server import ToolError as ToolError
from ._server import ToolHandler as ToolHandler
from ._server import ToolReturn as ToolReturn
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
from ._versions import STATELESS_VERSIONS as STATELESS_VERSIONS
from ._versions import SUPPORTED_VERSIONS as SUPPORTED_VERSIONS

if TYPE_CHECKING:
    from ._client import ClientTransport as ClientTransport
    from ._client import McpClient as McpClient
    from ._client import McpConnectionError as McpConnectionError
    from ._client import McpHttpStatusError as McpHttpStatusError
    from ._client import TransportFactory as TransportFactory
    from ._client import open_mcp_client as open_mcp_client
    from ._http_client import http_transport as http_transport
    from ._stdio import serve_stdio as serve_stdio
    from ._stdio import stdio_transport as stdio_transport
    from ._ws_client import websocket_transport as websocket_transport

# Name -> module of the names loaded on first use.
_LAZY_NAMES: dict[str, str] = {
    "ClientTransport": "._client",
    "McpClient": "._client",
    "McpConnectionError": "._client",
    "McpHttpStatusError": "._client",
    "TransportFactory": "._client",
    "open_mcp_client": "._client",
    "http_transport": "._http_client",
    "serve_stdio": "._stdio",
    "stdio_transport": "._stdio",
    "websocket_transport": "._ws_client",
}


def __getattr__(name: str) -> Any:
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES})
