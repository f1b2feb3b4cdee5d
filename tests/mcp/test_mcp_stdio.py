"""stdio: our client spawns a real child process running serve_stdio."""

from __future__ import annotations

import sys
import textwrap

import pytest
import trio
import trio.testing

from trio_sandbox.mcp import (
    Implementation,
    JsonObject,
    McpConnectionError,
    McpServer,
    open_mcp_client,
    serve_stdio,
    stdio_transport,
)

CHILD = textwrap.dedent(
    """
    import os
    import trio
    from trio_sandbox.mcp import Implementation, McpServer, serve_stdio

    server = McpServer(Implementation("stdio-child", "2.0"), page_size=3)

    schema = {"type": "object", "properties": {"who": {"type": "string"}}}

    @server.tool("greet", input_schema=schema)
    async def greet(arguments, ctx):
        await ctx.report_progress(0.5, 1.0, "halfway")
        return "hello " + arguments["who"]

    @server.tool("die")
    async def die(arguments, ctx):
        os._exit(3)

    @server.tool("ask_model")
    async def ask_model(arguments, ctx):
        answer = await ctx.send_request("sampling/createMessage", {"messages": []})
        return answer["content"]["text"]

    for index in range(7):
        server.tool(f"filler_{index}")(greet)

    trio.run(serve_stdio, server)
    """
)


@pytest.mark.parametrize("version", [None, "2025-11-25"])
async def test_stdio_end_to_end(version: str | None) -> None:
    seen: list[str | None] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    async def sample(params: JsonObject) -> JsonObject:
        return {"role": "assistant", "content": {"type": "text", "text": "from host"}, "model": "m"}

    transport = stdio_transport([sys.executable, "-c", CHILD])
    async with open_mcp_client(transport, protocol_version=version, sampling=sample) as client:
        assert client.server_info == Implementation("stdio-child", "2.0")
        names = [tool.name for tool in await client.list_tools()]
        assert len(names) == 10  # three pages of three, then one
        result = await client.call_tool("greet", {"who": "stdio"}, progress=on_progress)
        assert result.text_content == "hello stdio"
        assert seen == ["halfway"]
        if version is not None:  # server-to-client requests exist in the handshake era only
            assert (await client.call_tool("ask_model")).text_content == "from host"


async def test_child_dying_mid_call_is_an_error_not_a_hang() -> None:
    transport = stdio_transport([sys.executable, "-c", CHILD])
    with trio.fail_after(30):
        async with open_mcp_client(transport, protocol_version="2025-11-25") as client:
            with pytest.raises(McpConnectionError, match="closed the connection"):
                await client.call_tool("die")
            with pytest.raises(McpConnectionError):
                await client.ping()


async def test_missing_program_is_a_connection_error() -> None:
    transport = stdio_transport(["/nonexistent/mcp-server"])
    with pytest.raises(McpConnectionError, match="could not start"):
        async with open_mcp_client(transport):
            pass


async def test_serve_stdio_on_in_memory_streams() -> None:
    server = McpServer(Implementation("mem", "1"))
    to_server_send, to_server_receive = trio.testing.memory_stream_one_way_pair()
    from_server_send, from_server_receive = trio.testing.memory_stream_one_way_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: serve_stdio(server, stdin=to_server_receive, stdout=from_server_send)
        )
        await to_server_send.send_all(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n\nnot json\n')
        received = b""
        while received.count(b"\n") < 2:
            received += await from_server_receive.receive_some()
        await to_server_send.aclose()
    # Requests run concurrently, so the two answers may come in either order.
    lines = sorted(received.splitlines(), key=lambda line: b'"id":1' not in line)
    assert lines[0] == b'{"jsonrpc":"2.0","id":1,"result":{}}'
    assert b'"code":-32700' in lines[1]
