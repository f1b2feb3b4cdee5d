"""The sandbox as one of the proxy's upstreams, and a call it did not serve, in its own words.

The proxy's :class:`~trio_sandbox.proxy.Upstream` decides why a call was not served, where that
is known (:class:`~trio_sandbox.proxy.Unserved`): lost in flight (it may or may not have run),
no session within ``respawn_wait`` (not run), or refused (not run: a per-session sandbox that
could not start, or the bound on them). This module only says it the sandbox's way - a call lost
in flight was lost because *the sandbox restarted*, a call that waited in vain waited for a
*respawn* - and writes the decision into the tool result's ``_meta``, where remote clients read
it and from which :meth:`Sandbox.call_tool` raises :class:`SandboxRestarted` or
:class:`SandboxUnavailable`: the mark is read, never worked out again.
"""

from __future__ import annotations

from functools import partial
from typing import Final

from ..mcp import CallToolResult, TextContent
from ..proxy import RouteKey, SessionRouter, Unserved, Upstream, UpstreamUnavailable
from ._errors import SandboxRestarted, SandboxUnavailable

# In the ``_meta`` of a tool result the proxy made up because the sandbox went away.
RESTARTED_META_KEY: Final = "io.github.trio-sandbox/sandboxRestarted"
UNAVAILABLE_META_KEY: Final = "io.github.trio-sandbox/sandboxUnavailable"


def sandbox_upstream(
    name: str,
    prefix: str,
    *,
    call_wait: float,
    redact: bool = True,
    route: SessionRouter | None = None,
    route_key: RouteKey | None = None,
    consumed_meta_keys: frozenset[str] = frozenset(),
) -> Upstream:
    """The proxy's upstream for a sandbox (its session is attached by the generation that
    serves); with ``route``, one sandbox per downstream client (``route_key`` names it)."""
    return Upstream(
        name,
        prefix,
        call_wait=call_wait,
        redact=redact,
        route=route,
        route_key=route_key,
        consumed_meta_keys=consumed_meta_keys,
        unserved_result=partial(unserved_result, call_wait),
    )


def unserved_result(call_wait: float, error: UpstreamUnavailable) -> CallToolResult:
    """The tool result of a call the sandbox did not serve: why, and the mark of its kind."""
    key = UNAVAILABLE_META_KEY
    if error.unserved is Unserved.LOST_IN_FLIGHT:
        message = (
            f"the sandbox restarted while this call was in flight ({error.reason}); "
            "it may or may not have run, and it was not retried"
        )
        key = RESTARTED_META_KEY
    elif error.unserved is Unserved.NO_SESSION:
        message = (
            f"the sandbox is restarting and was not back within {call_wait:g} s "
            f"({error.reason}); the call was not run"
        )
    else:
        message = f"{error.reason}; the call was not run"
    return CallToolResult(content=(TextContent(message),), is_error=True, meta={key: True})


def raise_if_unserved(result: CallToolResult) -> CallToolResult:
    """``result``, unless its mark says the sandbox did not serve the call: then the error."""
    meta = result.meta
    if meta:
        if meta.get(RESTARTED_META_KEY):
            raise SandboxRestarted(result.text_content)
        if meta.get(UNAVAILABLE_META_KEY):
            raise SandboxUnavailable(result.text_content)
    return result
