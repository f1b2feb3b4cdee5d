"""Bad input at the proxy's HTTP face: arbitrary bytes, arbitrary JSON, mutated valid messages,
in and out of a session. The proxy answers like any server of ours (the checks of tests/mcp):
never a 5xx, always a well-formed JSON-RPC error or answer, no task left behind. Valid calls go
through to an in-process upstream (empty prefix), so routing and forwarding are fuzzed too.

The ASGI app is driven in-process on a virtual clock (fast); real sockets are covered elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypothesis import given
from hypothesis import strategies as st

from tests.mcp.asgi_harness import call_http
from tests.mcp.mcp_fuzz_support import (
    build_fuzz_server,
    mirrored_headers,
    mutated_messages,
    payloads,
    run_virtual,
)
from tests.mcp.test_mcp_fuzz_http import (
    BODY_LIMIT,
    FAST,
    GOOD_HEADERS,
    check_answer,
    check_sessions_idle,
    chunked,
)
from trio_sandbox.mcp import HttpSettings, Implementation, McpHttpApp
from trio_sandbox.proxy import InProcessUpstream, ProxyServer, Upstream
from trio_sandbox.proxy._serve import opener_for_spec


async def with_proxy_app(scenario: Callable[[McpHttpApp], Awaitable[None]]) -> None:
    """A ProxyServer fronting the fuzz server in process, served as an ASGI app."""
    server = ProxyServer(Implementation("fuzz-proxy", "1"), page_size=2)
    upstream = Upstream("fuzz", "", call_wait=1.0)
    server.add_upstream(upstream)
    spec = InProcessUpstream("fuzz", build_fuzz_server(), prefix="")
    async with trio.open_nursery() as nursery:
        await nursery.start(upstream.serve_connection, opener_for_spec(spec))
        await server.refresh()
        nursery.start_soon(server.serve_list_changes)
        app = McpHttpApp(server.mcp, HttpSettings(max_body_bytes=BODY_LIMIT))
        await scenario(app)
        check_sessions_idle(app)
        app.close()
        nursery.cancel_scope.cancel()


@FAST
@given(body=payloads, cuts=st.lists(st.integers(min_value=0), max_size=3))
def test_arbitrary_bodies_at_the_proxy_face(body: bytes, cuts: list[int]) -> None:
    async def scenario(app: McpHttpApp) -> None:
        result = await call_http(app, headers=GOOD_HEADERS, body_chunks=chunked(body, cuts))
        check_answer(result, body)

    run_virtual(lambda: with_proxy_app(scenario))


@FAST
@given(
    messages=st.lists(mutated_messages(stateless=True), min_size=1, max_size=3),
    mirror=st.booleans(),
)
def test_mutated_stateless_requests_at_the_proxy_face(messages: list[Any], mirror: bool) -> None:
    async def scenario(app: McpHttpApp) -> None:
        for message in messages:
            body = json.dumps(message).encode()
            headers = GOOD_HEADERS + (mirrored_headers(message) if mirror else [])
            result = await call_http(app, headers=headers, body_chunks=[body])
            if len(body) > BODY_LIMIT:
                assert result.status == 413, (result.status, result.body)  # a rare large one
            else:
                check_answer(result, body)

    run_virtual(lambda: with_proxy_app(scenario))


@FAST
@given(messages=st.lists(mutated_messages(stateless=False), min_size=1, max_size=3))
def test_mutated_messages_in_a_proxy_session(messages: list[Any]) -> None:
    async def scenario(app: McpHttpApp) -> None:
        initialize = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "fuzz", "version": "0"},
            },
        }
        opened = await call_http(
            app, headers=GOOD_HEADERS, body_chunks=[json.dumps(initialize).encode()]
        )
        assert opened.status == 200, opened.body
        headers = [
            *GOOD_HEADERS,
            ("mcp-session-id", opened.headers["mcp-session-id"]),
            ("mcp-protocol-version", "2025-11-25"),
        ]
        for message in messages:
            body = json.dumps(message).encode()
            check_answer(await call_http(app, headers=headers, body_chunks=[body]), body)

    run_virtual(lambda: with_proxy_app(scenario))
