"""Our client against our server's WebSocket face (subprotocol ``mcp``)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_sandbox.mcp import (
    BoundServer,
    Implementation,
    JsonObject,
    McpConnectionError,
    McpHttpApp,
    McpHttpStatusError,
    McpServer,
    RequestContext,
    open_mcp_client,
    serve_http,
    websocket_transport,
)

# Above the bound on one message both ends keep by default (4 MiB).
BIG = 5 * 1024 * 1024


def make_server() -> McpServer:
    server = McpServer(Implementation("ws-server", "1.0"), page_size=10)
    for index in range(25):

        async def echo(arguments: dict[str, Any], ctx: RequestContext) -> str:
            await ctx.report_progress(1, 1)
            return str(arguments.get("text", ""))

        server.tool(f"echo_{index}")(echo)

    @server.tool("ask_model")
    async def ask_model(arguments: dict[str, Any], ctx: RequestContext) -> str:
        answer = await ctx.send_request("sampling/createMessage", {"messages": []})
        return str(answer["content"]["text"])

    return server


@pytest.mark.parametrize("version", [None, "2025-11-25"])
async def test_websocket_end_to_end(nursery: trio.Nursery, version: str | None) -> None:
    bound: BoundServer = await nursery.start(serve_http, McpHttpApp(make_server()))
    url = bound.url.replace("http://", "ws://")
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with open_mcp_client(url, protocol_version=version) as client:
        assert client.server_info == Implementation("ws-server", "1.0")
        tools = await client.list_tools()
        assert [tool.name for tool in tools][:3] == ["echo_0", "echo_1", "echo_2"]
        assert len(tools) == 26
        result = await client.call_tool("echo_3", {"text": "over ws"}, progress=on_progress)
        assert result.text_content == "over ws"
        assert progress == [1.0]
        await client.ping()


async def test_websocket_sampling_round_trip(nursery: trio.Nursery) -> None:
    bound: BoundServer = await nursery.start(serve_http, McpHttpApp(make_server()))

    async def sample(params: JsonObject) -> JsonObject:
        return {"role": "assistant", "content": {"type": "text", "text": "sampled"}, "model": "m"}

    url = bound.url.replace("http://", "ws://")
    factory = websocket_transport(url, connect_timeout=5)
    async with open_mcp_client(factory, protocol_version="2025-11-25", sampling=sample) as client:
        assert (await client.call_tool("ask_model")).text_content == "sampled"


async def test_websocket_refused_is_a_connection_error() -> None:
    with pytest.raises(McpConnectionError, match=r"ws://127\.0\.0\.1:9/mcp"):
        async with open_mcp_client("ws://127.0.0.1:9/mcp"):
            pass


async def test_an_upgrade_answered_with_a_status_is_an_http_status_error(
    nursery: trio.Nursery,
) -> None:
    """A server that speaks Streamable HTTP only answers the upgrade with a status: the caller
    learns which (and can speak HTTP instead), and no socket is left open."""
    app = McpHttpApp(make_server())

    async def http_only(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await app(scope, receive, send)

    bound: BoundServer = await nursery.start(
        lambda task_status: serve_http(http_only, path="/mcp", task_status=task_status)
    )
    with pytest.raises(McpHttpStatusError) as caught:
        async with open_mcp_client(f"ws://127.0.0.1:{bound.port}/mcp"):
            pass  # pragma: no cover - refused
    assert caught.value.status == 403
    async with open_mcp_client(f"http://127.0.0.1:{bound.port}/mcp") as client:
        result = await client.call_tool("echo_1", {"text": "over http"})
        assert result.text_content == "over http"


async def test_what_is_received_has_its_own_bound(nursery: trio.Nursery) -> None:
    server = McpServer(Implementation("big", "1"))

    @server.tool("big")
    async def big(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return "x" * BIG

    bound: BoundServer = await nursery.start(serve_http, McpHttpApp(server))
    url = bound.url.replace("http://", "ws://")
    async with open_mcp_client(websocket_transport(url, max_received_size=2 * BIG)) as client:
        assert (await client.call_tool("big")).text_content == "x" * BIG

    async def call_within_the_default_bound() -> None:
        async with open_mcp_client(websocket_transport(url)) as client:
            await client.call_tool("big")

    with trio.fail_after(10), pytest.raises(McpConnectionError):
        await call_within_the_default_bound()
