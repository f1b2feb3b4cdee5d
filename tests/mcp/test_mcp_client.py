"""Our client against our server over Streamable HTTP, in both protocol eras."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
import trio
import trio.testing

from trio_sandbox.mcp import (
    BoundServer,
    Implementation,
    JsonObject,
    McpClient,
    McpConnectionError,
    McpError,
    McpHttpApp,
    McpServer,
    RequestContext,
    Tool,
    open_mcp_client,
    serve_http,
)

ERAS = [None, "2025-11-25", "2025-03-26"]  # None: probe, which finds the stateless era


class WireLog:
    """An ASGI wrapper that records every JSON-RPC method POSTed to the app."""

    def __init__(self, app: McpHttpApp) -> None:
        self.app = app
        self.methods: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def logged_receive() -> Any:
            message = await receive()
            body = message.get("body") if isinstance(message, dict) else None
            if body:
                try:
                    raw = json.loads(body)
                except ValueError:
                    raw = None
                for item in raw if isinstance(raw, list) else [raw]:
                    if isinstance(item, dict) and isinstance(item.get("method"), str):
                        self.methods.append(item["method"])
            return message

        await self.app(scope, logged_receive, send)


def make_server() -> McpServer:
    server = McpServer(Implementation("test-server", "1.0"))
    for index in range(250):
        server.add_tool(Tool(f"tool_{index:03}", description=f"tool {index}"), _echo_index)

    @server.tool("count", input_schema={"type": "object", "properties": {"n": {"type": "integer"}}})
    async def count(arguments: dict[str, Any], ctx: RequestContext) -> str:
        for step in range(1, arguments["n"] + 1):
            await ctx.report_progress(step, arguments["n"], f"step {step}")
        return "counted"

    @server.tool("ask_model")
    async def ask_model(arguments: dict[str, Any], ctx: RequestContext) -> str:
        answer = await ctx.send_request(
            "sampling/createMessage",
            {"messages": [{"role": "user", "content": {"type": "text", "text": "2+2?"}}]},
        )
        return str(answer["content"]["text"])

    return server


async def _echo_index(arguments: dict[str, Any], ctx: RequestContext) -> str:
    return "ok"


@pytest.fixture
async def served(nursery: trio.Nursery) -> tuple[McpServer, WireLog, str]:
    server = make_server()
    wire = WireLog(McpHttpApp(server))
    bound: BoundServer = await nursery.start(functools.partial(serve_http, wire, path="/mcp"))
    return server, wire, bound.url


@pytest.mark.parametrize("version", ERAS)
async def test_list_tools_follows_cursors(
    served: tuple[McpServer, WireLog, str], version: str | None
) -> None:
    _, wire, url = served
    async with open_mcp_client(url, protocol_version=version) as client:
        tools = await client.list_tools()
    names = [tool.name for tool in tools]
    assert len(names) == 252
    assert names[:250] == [f"tool_{index:03}" for index in range(250)]
    assert wire.methods.count("tools/list") == 3  # page size 100


async def test_probe_finds_stateless_era(served: tuple[McpServer, WireLog, str]) -> None:
    _, wire, url = served
    async with open_mcp_client(url) as client:
        assert client.protocol_version == "2026-07-28"
        assert client.server_info == Implementation("test-server", "1.0")
        assert "tools" in client.server_capabilities
        await client.ping()
    assert "initialize" not in wire.methods
    assert wire.methods[0] == "server/discover"


@pytest.mark.parametrize("version", ERAS)
async def test_call_tool_reports_progress(
    served: tuple[McpServer, WireLog, str], version: str | None
) -> None:
    _, _, url = served
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with open_mcp_client(url, protocol_version=version) as client:
        result = await client.call_tool("count", {"n": 3}, progress=on_progress)
    assert result.text_content == "counted"
    assert not result.is_error
    assert seen == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]


@pytest.mark.parametrize("version", ERAS)
async def test_cancelling_the_caller_cancels_the_request_on_the_wire(
    served: tuple[McpServer, WireLog, str], version: str | None
) -> None:
    server, wire, url = served
    entered = trio.Event()
    cancelled = trio.Event()

    @server.tool("wait_forever")
    async def wait_forever(arguments: dict[str, Any], ctx: RequestContext) -> str:
        entered.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise
        return "unreachable"

    async with open_mcp_client(url, protocol_version=version) as client:
        with trio.CancelScope() as caller:

            async def cancel_once_running() -> None:
                await entered.wait()
                caller.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_once_running)
                await client.call_tool("wait_forever")
        assert caller.cancelled_caught
        with trio.fail_after(10):
            await cancelled.wait()
        # The client still works afterwards.
        assert (await client.call_tool("count", {"n": 1})).text_content == "counted"
        stateless = client.stateless
    expected_notices = 0 if stateless else 1
    assert wire.methods.count("notifications/cancelled") == expected_notices


@pytest.mark.parametrize("version", ["2025-11-25", "2025-06-18"])
async def test_sampling_round_trip(served: tuple[McpServer, WireLog, str], version: str) -> None:
    _, _, url = served
    asked: list[JsonObject] = []

    async def sample(params: JsonObject) -> JsonObject:
        asked.append(params)
        return {"role": "assistant", "content": {"type": "text", "text": "4"}, "model": "m"}

    async with open_mcp_client(url, protocol_version=version, sampling=sample) as client:
        assert client.capabilities == {"sampling": {}}
        result = await client.call_tool("ask_model")
    assert result.text_content == "4"
    assert asked[0]["messages"][0]["content"]["text"] == "2+2?"


async def test_unsupported_server_request_is_method_not_found(
    served: tuple[McpServer, WireLog, str],
) -> None:
    _, _, url = served
    async with open_mcp_client(url, protocol_version="2025-11-25") as client:
        # Our server passes the client's -32601 on as the tool call's error.
        with pytest.raises(McpError, match="sampling/createMessage") as caught:
            await client.call_tool("ask_model")
    assert caught.value.code == -32601


async def test_json_rpc_errors_raise_mcp_error(served: tuple[McpServer, WireLog, str]) -> None:
    _, _, url = served
    async with open_mcp_client(url) as client:
        with pytest.raises(McpError) as caught:
            await client.request("no/such/method")
    assert caught.value.code == -32601


async def test_unreachable_server_names_the_url() -> None:
    url = "http://127.0.0.1:9/mcp"  # the discard port: nothing listens there
    with pytest.raises(McpConnectionError, match=r"127\.0\.0\.1:9/mcp"):
        async with open_mcp_client(url):
            pass


@pytest.mark.parametrize("version", [None, "2025-11-25"])
async def test_server_dying_mid_call_is_an_error_not_a_hang(version: str | None) -> None:
    server = make_server()
    entered = trio.Event()

    @server.tool("slow")
    async def slow(arguments: dict[str, Any], ctx: RequestContext) -> str:
        entered.set()
        await trio.sleep_forever()
        return "unreachable"

    async with trio.open_nursery() as nursery:
        server_scope = trio.CancelScope()

        async def run_server(task_status: trio.TaskStatus[BoundServer]) -> None:
            with server_scope:
                await serve_http(McpHttpApp(server), graceful_timeout=0.2, task_status=task_status)

        bound: BoundServer = await nursery.start(run_server)

        async def kill_server() -> None:
            await entered.wait()
            server_scope.cancel()

        nursery.start_soon(kill_server)
        with trio.fail_after(20):
            async with open_mcp_client(bound.url, protocol_version=version) as client:
                with pytest.raises(McpConnectionError, match=bound.url):
                    await client.call_tool("slow")


async def test_client_is_a_live_object(served: tuple[McpServer, WireLog, str]) -> None:
    _, _, url = served
    async with open_mcp_client(url) as first, open_mcp_client(url) as second:
        assert isinstance(first, McpClient)
        assert first != second


# --- a request's wait for its answer ---------------------------------------------------------


async def test_a_cancelled_wait_runs_nothing_queued_for_it() -> None:
    from trio_sandbox.mcp.client._pending import PendingRequest
    from trio_sandbox.mcp.protocol._messages import Response

    pending = PendingRequest()
    ran: list[int] = []

    async def queue_from_another_task() -> None:
        for index in range(3):

            async def thunk(index: int = index) -> None:
                ran.append(index)

            await pending.run_or_queue(thunk)
        pending.settle(Response(1, {}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(queue_from_another_task)
    with trio.CancelScope() as scope:
        scope.cancel()
        await pending.wait_answer()
    assert scope.cancelled_caught
    assert ran == []  # a cancelled caller does not run a server's queued notes
    await pending.wait_answer()
    assert ran == [0, 1, 2]


async def test_waiting_for_an_answer_already_in_is_a_checkpoint() -> None:
    from trio_sandbox.mcp.client._pending import PendingRequest
    from trio_sandbox.mcp.protocol._messages import Response

    pending = PendingRequest()
    pending.settle(Response(1, {}))
    with trio.testing.assert_checkpoints():
        await pending.wait_answer()
