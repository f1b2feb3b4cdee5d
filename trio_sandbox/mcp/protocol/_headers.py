"""MCP's HTTP header names, and the stateless era's mirrored headers (SEP-2243), checked
against the JSON-RPC body.

Every 2026-07-28 POST names its method in ``Mcp-Method`` and, for tools/call, prompts/get and
resources/read, its target in ``Mcp-Name``, so that gateways can route without parsing bodies.
Tool arguments whose input-schema property carries ``"x-mcp-header": "Suffix"`` are mirrored in
``Mcp-Param-Suffix``; values that are not plain visible ASCII travel as ``=?base64?...?=``. A
server must refuse a request whose headers disagree with its body (HTTP 400, error -32020):
otherwise a gateway could be told one thing and the server do another.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from typing import Any, Final

from ._errors import McpError
from ._messages import HEADER_MISMATCH, Request
from ._types import Tool

# Streamable HTTP's headers, both eras (lower case, as ASGI and h11 give them).
SESSION_HEADER: Final = "mcp-session-id"
VERSION_HEADER: Final = "mcp-protocol-version"
# The stateless era's mirrors of the body.
METHOD_HEADER: Final = "mcp-method"
NAME_HEADER: Final = "mcp-name"
PARAM_HEADER_PREFIX: Final = "mcp-param-"
# The params member each method mirrors in Mcp-Name.
NAME_SOURCE: Final = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    "tasks/get": "taskId",
    "tasks/update": "taskId",
    "tasks/cancel": "taskId",
}
_BASE64_WRAPPED: Final = re.compile(r"=\?base64\?(.*)\?=", re.DOTALL)
_STRICT_BASE64: Final = re.compile(
    r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
)


def _mismatch(request: Request, message: str) -> McpError:
    return McpError(HEADER_MISMATCH, f"{request.method}: {message}")


def decode_param_header(value: str) -> str:
    """The value an ``Mcp-Param-*`` header stands for; ValueError for broken base64."""
    value = value.strip(" \t")
    match = _BASE64_WRAPPED.fullmatch(value)
    if match is None:
        return value
    encoded = match.group(1)
    if not _STRICT_BASE64.fullmatch(encoded):
        raise ValueError("invalid base64 in header value")
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("invalid base64 in header value") from None


def header_text(value: object) -> str | None:
    """How an argument is written in its ``Mcp-Param-*`` header (None: no header)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # As JavaScript's String(n) writes it: 3.0 -> "3", 2.5 -> "2.5".
        if math.isfinite(value) and value == int(value) and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, str):
        return value
    return None


def check_standard_headers(request: Request, headers: Mapping[str, str]) -> None:
    """Mcp-Method and Mcp-Name must be present and equal to what the body says."""
    method_header = headers.get(METHOD_HEADER)
    if method_header is None:
        raise _mismatch(request, "missing Mcp-Method header")
    if method_header.strip(" \t") != request.method:
        raise _mismatch(
            request, f"Mcp-Method header {method_header!r} does not match method {request.method!r}"
        )
    key = NAME_SOURCE.get(request.method)
    if key is None:
        return
    expected = (request.params or {}).get(key)
    name_header = headers.get(NAME_HEADER)
    if name_header is None:
        raise _mismatch(request, f"missing Mcp-Name header (params.{key} of {request.method})")
    if name_header.strip(" \t") != expected:
        raise _mismatch(request, f"Mcp-Name header {name_header!r} does not match params.{key}")


def check_param_headers(
    request: Request, input_schema: Mapping[str, Any], headers: Mapping[str, str]
) -> None:
    """Every argument annotated with ``x-mcp-header`` must be mirrored exactly, and only those."""
    properties = input_schema.get("properties")
    if not isinstance(properties, dict):
        return
    arguments = (request.params or {}).get("arguments")
    arguments = arguments if isinstance(arguments, dict) else {}
    for name, definition in properties.items():
        suffix = definition.get("x-mcp-header") if isinstance(definition, dict) else None
        if not isinstance(suffix, str) or not suffix:
            continue
        header_name = PARAM_HEADER_PREFIX + suffix.lower()
        expected = header_text(arguments.get(name))
        received = headers.get(header_name)
        if expected is None:
            if received is not None:
                raise _mismatch(request, f"Mcp-Param-{suffix} sent without argument {name!r}")
            continue
        if received is None:
            raise _mismatch(request, f"missing Mcp-Param-{suffix} header for argument {name!r}")
        try:
            decoded = decode_param_header(received)
        except ValueError as exc:
            raise _mismatch(request, f"Mcp-Param-{suffix}: {exc}") from None
        if decoded != expected:
            raise _mismatch(request, f"Mcp-Param-{suffix} does not match argument {name!r}")


# --- the client's side: the headers a stateless-era request carries ----------------------------

# RFC 9110 token characters: what an x-mcp-header name may use.
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PRIMITIVE_TYPES: Final = frozenset({"string", "integer", "number", "boolean"})
# What a header value cannot carry as it is: controls, DEL and anything beyond ASCII.
_UNSAFE_IN_HEADER: Final = re.compile(r"[^\x20-\x7e]")


def encode_header_value(value: object) -> str | None:
    """A tool argument as an ``Mcp-Param-*`` header value; None when it has no header."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if not isinstance(value, str):
        return None
    if _UNSAFE_IN_HEADER.search(value) or value != value.strip():
        return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="
    return value


def header_parameters(tool: Tool) -> dict[str, str] | None:
    """The ``x-mcp-header`` names of a tool's parameters, or None when one is invalid."""
    properties = tool.input_schema.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    found: dict[str, str] = {}
    seen: set[str] = set()
    for parameter, schema in properties.items():
        if not isinstance(schema, Mapping) or "x-mcp-header" not in schema:
            continue
        name = schema["x-mcp-header"]
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            return None
        if schema.get("type") not in _PRIMITIVE_TYPES or name.lower() in seen:
            return None
        seen.add(name.lower())
        found[parameter] = name
    return found
