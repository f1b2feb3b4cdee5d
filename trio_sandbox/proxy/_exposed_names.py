"""Tool and prompt names as the proxy shows them: ``PREFIX__NAME``, at most 64 characters.

Many MCP clients cap tool names at 64 characters, so longer names are shortened
deterministically (a readable head plus a hash of the whole name) and still routed.

Collisions: two upstreams with the same non-empty prefix are refused at startup. Two upstreams
whose tools (or prompts) end up under the same exposed name - possible with empty prefixes, or
with tools that appear later - can only be found at listing time: that name is then offered by
neither, a call to it fails with an error naming both upstreams, and both upstreams' statuses
carry the collision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

import attrs

from ._errors import NameCollisionError

SEPARATOR: Final = "__"
MAX_NAME_LENGTH: Final = 64
_HASH_LENGTH: Final = 10


def exposed_name(prefix: str, name: str) -> str:
    """The name a client sees for upstream tool ``name`` under ``prefix`` (empty: no prefix)."""
    full = f"{prefix}{SEPARATOR}{name}" if prefix else name
    if len(full) <= MAX_NAME_LENGTH:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:_HASH_LENGTH]
    head = full[: MAX_NAME_LENGTH - _HASH_LENGTH - 1]
    return f"{head}_{digest}"


@attrs.frozen
class Route:
    """Where an exposed name leads: the upstream and the name it knows the item by."""

    upstream: str
    name: str


def build_routes(
    kind: str, listings: Iterable[tuple[str, str, Iterable[str]]]
) -> tuple[dict[str, Route], dict[str, NameCollisionError]]:
    """Map exposed names to routes for ``(upstream, prefix, names)`` listings.

    A name claimed by two upstreams is routed to neither: it is returned among the collisions,
    keyed by the exposed name, naming the first two claimants in the order given.
    """
    routes: dict[str, Route] = {}
    collisions: dict[str, NameCollisionError] = {}
    for upstream, prefix, names in listings:
        for name in names:
            exposed = exposed_name(prefix, name)
            if exposed in collisions:
                continue
            taken = routes.get(exposed)
            if taken is None:
                routes[exposed] = Route(upstream, name)
            elif taken.upstream != upstream:
                collisions[exposed] = NameCollisionError(kind, exposed, taken.upstream, upstream)
                del routes[exposed]
    return routes, collisions


def check_prefixes(prefixes: Iterable[tuple[str, str]]) -> None:
    """Refuse two upstreams with the same non-empty prefix before anything starts."""
    owners: dict[str, str] = {}
    for upstream, prefix in prefixes:
        if SEPARATOR in prefix:
            raise ValueError(
                f"the prefix {prefix!r} of upstream {upstream!r} contains {SEPARATOR!r}"
            )
        if not prefix:
            continue
        if prefix in owners:
            raise NameCollisionError("prefix", prefix, owners[prefix], upstream)
        owners[prefix] = upstream
