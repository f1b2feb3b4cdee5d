"""Listings: pagination with opaque cursors, cache hints, and the methods of each era.

Shared by the server core and by anything that serves listings of its own (the proxy's merged
view).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Final

import attrs

from ..protocol._errors import McpError
from ..protocol._messages import INVALID_PARAMS, JsonObject

# List methods and the member of their result that holds the items.
LIST_RESULT_KEYS: Final = {
    "tools/list": "tools",
    "prompts/list": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
}
# Results a stateless-era client may cache (``ttlMs``/``cacheScope`` from list_cache).
CACHEABLE_LISTINGS: Final = frozenset({"server/discover", *LIST_RESULT_KEYS})
# Methods of the handshake era that the stateless era removed (their jobs moved to _meta,
# server/discover and subscriptions/listen).
HANDSHAKE_ONLY_METHODS: Final = frozenset(
    {"initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"}
)


@attrs.frozen
class CacheHint:
    """How long (``ttl_ms``) and how widely (``scope``) a client may reuse a result."""

    ttl_ms: int = 0
    scope: str = "private"  # "public": no user-specific data, shareable across users

    def __attrs_post_init__(self) -> None:
        if self.ttl_ms < 0 or self.scope not in ("public", "private"):
            raise ValueError(f"invalid cache hint: {self!r}")


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode()


def decode_cursor(cursor: object) -> int:
    if cursor is None:
        return 0
    try:
        if not isinstance(cursor, str):
            raise ValueError
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        if not text.startswith("o"):
            raise ValueError
        offset = int(text[1:])
        if offset < 0:
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise McpError(INVALID_PARAMS, f"invalid cursor: {cursor!r}") from None
    return offset


def paginate(
    items: Sequence[JsonObject], key: str, params: JsonObject, page_size: int
) -> JsonObject:
    """One page of a list result, with an opaque ``nextCursor`` when more remain."""
    offset = decode_cursor(params.get("cursor"))
    page = list(items[offset : offset + page_size])
    result: JsonObject = {key: page}
    if offset + page_size < len(items):
        result["nextCursor"] = encode_cursor(offset + page_size)
    return result


def match_uri_template(template: str, uri: str) -> dict[str, str] | None:
    """Match a level-1 RFC 6570 template ("file:///{path}") against a URI."""
    names: list[str] = []
    pattern = ""
    rest = template
    while "{" in rest:
        head, _, tail = rest.partition("{")
        name, _, rest = tail.partition("}")
        pattern += re.escape(head)
        names.append(name.lstrip("+#"))
        pattern += "(.+)" if name.startswith("+") else "([^/]+)"
    pattern += re.escape(rest)
    match = re.fullmatch(pattern, uri)
    if match is None:
        return None
    return dict(zip(names, match.groups(), strict=True))


def string_param(params: JsonObject, key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str):
        raise McpError(INVALID_PARAMS, f"missing or invalid parameter {key!r}")
    return value


# Frozen, so one shared instance is a safe default: results may not be reused.
NO_CACHING = CacheHint()
