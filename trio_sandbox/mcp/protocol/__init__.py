"""The protocol room: what both sides of MCP agree on, and nothing that runs a side.

JSON-RPC messages and error codes (``_messages``), their codec (``_jsonrpc``), every MCP error
(``_errors``, whose root derives from ``contract.SandboxError``), the values programs build and
read (``_types``), protocol versions and their eras (``_versions``), HTTP header names and the
stateless era's mirrored headers (``_headers``), and stdio's line framing (``_lines``). The server
and the client import from here; nothing here imports either.
"""

from __future__ import annotations

from ._errors import HttpClientError as HttpClientError
from ._errors import HttpRefusal as HttpRefusal
from ._errors import McpBaseError as McpBaseError
from ._errors import McpConnectionError as McpConnectionError
from ._errors import McpError as McpError
from ._errors import McpHttpStatusError as McpHttpStatusError
from ._errors import McpSessionExpired as McpSessionExpired
from ._errors import MessageDecodeError as MessageDecodeError
from ._errors import ToolError as ToolError
from ._headers import SESSION_HEADER as SESSION_HEADER
from ._headers import VERSION_HEADER as VERSION_HEADER
from ._jsonrpc import MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES
from ._jsonrpc import decode_message as decode_message
from ._jsonrpc import dump_message as dump_message
from ._jsonrpc import encode_message as encode_message
from ._jsonrpc import parse_json as parse_json
from ._messages import CONNECTION_CLOSED as CONNECTION_CLOSED
from ._messages import HEADER_MISMATCH as HEADER_MISMATCH
from ._messages import INTERNAL_ERROR as INTERNAL_ERROR
from ._messages import INVALID_PARAMS as INVALID_PARAMS
from ._messages import INVALID_REQUEST as INVALID_REQUEST
from ._messages import LIMIT_REACHED as LIMIT_REACHED
from ._messages import METHOD_NOT_FOUND as METHOD_NOT_FOUND
from ._messages import MISSING_CLIENT_CAPABILITY as MISSING_CLIENT_CAPABILITY
from ._messages import PARSE_ERROR as PARSE_ERROR
from ._messages import REQUEST_TIMEOUT as REQUEST_TIMEOUT
from ._messages import RESOURCE_NOT_FOUND as RESOURCE_NOT_FOUND
from ._messages import UNSUPPORTED_PROTOCOL_VERSION as UNSUPPORTED_PROTOCOL_VERSION
from ._messages import ErrorObject as ErrorObject
from ._messages import ErrorResponse as ErrorResponse
from ._messages import JsonObject as JsonObject
from ._messages import Message as Message
from ._messages import Notification as Notification
from ._messages import Request as Request
from ._messages import RequestId as RequestId
from ._messages import Response as Response
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
