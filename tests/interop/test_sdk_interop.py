"""Interop with the official MCP Python SDK (`mcp`, a test-only peer).

Its client, in legacy (initialize handshake) and auto (probe the stateless era first) modes, talks
to our server over Streamable HTTP served by our serve_http, and over stdio to a child process
running our server; our client talks to the SDK's MCPServer served by hypercorn under Trio.
Everything runs on 127.0.0.1 with real sockets and real child processes.
"""

from __future__ import annotations

import functools
import gc
import sys
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp
import pytest
import trio
import trio.lowlevel
from mcp.client.stdio import StdioServerParameters
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from tests.interop.sdk_interop_server import build_server
from tests.interop.sdk_peer_server import build_sdk_server
from tests.support.sandbox_users import REPO
from trio_sandbox.mcp import (
    INVALID_PARAMS,
    BoundServer,
    McpClient,
    McpHttpApp,
    McpServer,
    RequestContext,
    open_mcp_client,
    serve_http,
    stdio_transport,
)

# The SDK's httpx2 streams leave async generators for Trio to finalize; that is the SDK's
# business, not a fault of the server under test.
pytestmark = pytest.mark.filterwarnings("ignore:Async generator 'http(x|core)2[.]:ResourceWarning")

STDIO_CHILD = Path(__file__).with_name("sdk_interop_server.py")
MODES = ["legacy", "auto"]
# What each mode must settle on with our server: the newest version of its era.
EXPECTED_VERSION = {"legacy": "2025-11-25", "auto": "2026-07-28"}


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[BoundServer]:
    """Serve an ASGI app with our serve_http on an ephemeral loopback port, at /mcp."""
    async with trio.open_nursery() as nursery:
        bound: BoundServer = await nursery.start(functools.partial(serve_http, app, path="/mcp"))
        yield bound
        nursery.cancel_scope.cancel()


def sdk_json(model: Any) -> dict[str, Any]:
    """An SDK pydantic model in its wire form."""
    dumped: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return dumped


async def sdk_list_all_tools(client: mcp.Client) -> list[dict[str, Any]]:
    """Follow nextCursor through every page, as a client must."""
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await client.list_tools(cursor=cursor, cache_mode="bypass")
        pages += 1
        tools.extend(sdk_json(tool) for tool in page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages > 1, "the interop server's page size should force pagination"
    return tools


async def exercise_our_server(client: mcp.Client, server: McpServer, mode: str) -> None:
    """Everything the SDK client should see from our server, whatever the transport."""
    assert client.protocol_version == EXPECTED_VERSION[mode]
    assert client.server_info is not None
    assert client.server_info.name == "trio-sandbox-interop"
    assert client.server_capabilities.tools is not None

    if mode == "legacy":
        # The SDK flags ping as removed in 2026-07-28 even while it is legal in the handshake era.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.send_ping()

    listed = await sdk_list_all_tools(client)
    assert listed == [tool.to_json() for tool in server.tools]

    progress_seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        progress_seen.append((progress, total, message))

    echoed = await client.call_tool("echo", {"text": "héllo"}, progress_callback=on_progress)
    assert not echoed.is_error
    assert [sdk_json(item) for item in echoed.content] == [{"type": "text", "text": "héllo"}]
    assert progress_seen == [(1, 2, "halfway"), (2, 2, "done")]

    added = await client.call_tool("add", {"a": 2, "b": 40})
    assert not added.is_error
    assert added.structured_content == {"sum": 42}
    assert [sdk_json(item) for item in added.content] == [{"type": "text", "text": "42"}]

    # Argument validation failures and tool failures are results with isError, not exceptions.
    invalid = await client.call_tool("add", {"a": "two", "b": 40})
    assert invalid.is_error
    assert "invalid arguments" in sdk_json(invalid.content[0])["text"]
    failed = await client.call_tool("fail", {})
    assert failed.is_error
    assert [sdk_json(item) for item in failed.content] == [
        {"type": "text", "text": "deliberate failure"}
    ]

    # An unknown tool is a JSON-RPC error, which the SDK raises.
    with pytest.raises(MCPError) as raised:
        await client.call_tool("no-such-tool", {})
    assert raised.value.code == INVALID_PARAMS
    assert "no-such-tool" in raised.value.message


@pytest.mark.parametrize("mode", MODES)
async def test_sdk_client_against_our_http_server(mode: str) -> None:
    server = build_server()
    app = McpHttpApp(server)
    async with served(app) as bound, mcp.Client(bound.url, mode=mode) as client:
        await exercise_our_server(client, server, mode)
        sessions_during = app.session_count
    # Legacy mode opens an Mcp-Session-Id session and deletes it on exit; auto mode needs none.
    assert sessions_during == (1 if mode == "legacy" else 0)
    assert app.session_count == 0


@pytest.mark.parametrize("mode", MODES)
async def test_sdk_client_cancellation_reaches_our_tool(mode: str) -> None:
    """Cancelling the SDK caller cancels our handler (notifications/cancelled in the handshake
    era, the closed response stream in the stateless era); the session stays usable."""
    server = build_server()
    started = trio.Event()
    cancelled = trio.Event()

    @server.tool("block", description="Waits until cancelled.")
    async def block(arguments: dict[str, Any], ctx: RequestContext) -> str:
        started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    async with served(McpHttpApp(server)) as bound, mcp.Client(bound.url, mode=mode) as client:
        async with trio.open_nursery() as nursery:

            async def call_block() -> None:
                await client.call_tool("block", {})
                raise AssertionError("block returned although it was cancelled")

            nursery.start_soon(call_block)
            await started.wait()
            nursery.cancel_scope.cancel()
        await cancelled.wait()
        after = await client.call_tool("add", {"a": 1, "b": 1})
        assert after.structured_content == {"sum": 2}


def _have_serve_stdio() -> bool:
    import trio_sandbox.mcp

    return hasattr(trio_sandbox.mcp, "serve_stdio")


@pytest.mark.parametrize("mode", MODES)
async def test_sdk_client_against_our_stdio_server(mode: str) -> None:
    """The SDK launches a child process running our server on stdio, as MCP hosts do."""
    if not _have_serve_stdio():
        pytest.fail("trio_sandbox.mcp.serve_stdio does not exist yet")
    params = StdioServerParameters(command=sys.executable, args=[str(STDIO_CHILD)])
    async with mcp.Client(params, mode=mode) as client:
        await exercise_our_server(client, build_server(), mode)


# --- our client against the SDK's MCPServer ----------------------------------------------------

# Our client's modes: None probes the stateless era and falls back; a version pins it.
OUR_CLIENT_VERSIONS = [None, "2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"]


async def exercise_sdk_server(client: McpClient, sdk: MCPServer[Any], pinned: str | None) -> None:
    assert client.protocol_version == (pinned or "2026-07-28")
    assert client.server_info is not None
    assert client.server_info.name == "sdk-peer"

    listed = [tool.to_json() for tool in await client.list_tools()]
    expected = [sdk_json(tool) for tool in await sdk.list_tools()]
    assert listed == expected
    assert [tool["name"] for tool in listed][:3] == ["echo", "add", "fail"]

    progress_seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        progress_seen.append((progress, total, message))

    echoed = await client.call_tool("echo", {"text": "héllo"}, progress=on_progress)
    assert not echoed.is_error
    assert echoed.text_content == "héllo"
    assert progress_seen == [(1, 2, "halfway"), (2, 2, "done")]

    added = await client.call_tool("add", {"a": 2, "b": 40})
    assert not added.is_error
    assert added.structured_content == {"result": 42}

    invalid = await client.call_tool("add", {"a": "two", "b": 40})
    assert invalid.is_error
    failed = await client.call_tool("fail", {})
    assert failed.is_error
    assert "deliberate failure" in failed.text_content


@pytest.mark.parametrize("pinned", OUR_CLIENT_VERSIONS)
async def test_our_client_against_sdk_server_over_http(pinned: str | None) -> None:
    """The SDK's Starlette app, served by hypercorn under Trio through our serve_http."""
    sdk = build_sdk_server()
    started = trio.Event()
    cancelled = trio.Event()

    @sdk.tool(description="Waits until cancelled.")
    async def block() -> str:
        started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    async with (
        served(sdk.streamable_http_app()) as bound,
        open_mcp_client(bound.url, protocol_version=pinned) as client,
    ):
        await exercise_sdk_server(client, sdk, pinned)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.call_tool, "block", {})
            await started.wait()
            nursery.cancel_scope.cancel()
        await cancelled.wait()
        after = await client.call_tool("add", {"a": 1, "b": 1})
        assert after.structured_content == {"result": 2}


@pytest.mark.parametrize("pinned", [None, "2025-11-25"])
async def test_our_client_against_sdk_server_over_stdio(pinned: str | None) -> None:
    """Our stdio client launches the SDK's MCPServer.run("stdio") as a child process."""
    argv = [sys.executable, "-m", "tests.interop.sdk_mcpserver_child"]
    async with open_mcp_client(
        stdio_transport(argv, cwd=str(REPO)), protocol_version=pinned
    ) as client:
        await exercise_sdk_server(client, build_sdk_server(), pinned)


async def test_our_http_client_finalizes_its_streams() -> None:
    sdk = build_sdk_server()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        async with (
            served(sdk.streamable_http_app()) as bound,
            open_mcp_client(bound.url, protocol_version="2025-11-25") as client,
        ):
            await client.call_tool("echo", {"text": "x"})
        gc.collect()
        await trio.lowlevel.checkpoint()  # let Trio's finalizer run
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
