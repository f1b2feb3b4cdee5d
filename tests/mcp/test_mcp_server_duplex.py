"""serve_duplex (the stdio / WebSocket session loop): stateless-era requests on a channel are
cancelled by notifications/cancelled, and MRTR works there too."""

from __future__ import annotations

import json
from typing import Any

import trio
import trio.testing

from trio_sandbox.mcp import Implementation, McpServer, RequestContext, ToolReturn, serve_duplex

META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
}


def make_server(started: trio.Event, cancelled: trio.Event) -> McpServer:
    server = McpServer(Implementation("duplex-test", "1"))

    @server.tool("wait", description="waits until cancelled")
    async def wait(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    @server.tool("ask", description="asks a name")
    async def ask(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        answer = await ctx.elicit("Name?", {"type": "object", "properties": {}})
        return f"hi {answer['content']['name']}"

    return server


async def test_stateless_request_cancelled_on_the_channel(autojump_clock: Any) -> None:
    started, cancelled = trio.Event(), trio.Event()
    to_server, from_client = trio.open_memory_channel[str](10)
    sent: list[dict[str, Any]] = []

    async def send_bytes(data: bytes) -> None:
        sent.append(json.loads(data))

    async def frames() -> Any:
        async for frame in from_client:
            yield frame

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_duplex, make_server(started, cancelled), frames(), send_bytes)
        call = {"name": "wait", "arguments": {}, "_meta": META}
        await to_server.send(
            json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": call})
        )
        await started.wait()
        cancel = {"requestId": 3, "reason": "no longer needed"}
        await to_server.send(
            json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel})
        )
        with trio.fail_after(1):
            await cancelled.wait()
        ask = {"name": "ask", "arguments": {}, "_meta": META}
        await to_server.send(
            json.dumps({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": ask})
        )
        await trio.testing.wait_all_tasks_blocked()
        retry = {
            **ask,
            "inputResponses": {"elicit": {"action": "accept", "content": {"name": "Di"}}},
            "requestState": sent[-1]["result"]["requestState"],
        }
        await to_server.send(
            json.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": retry})
        )
        await trio.testing.wait_all_tasks_blocked()
        to_server.close()
    # Nothing answers the cancelled request.
    assert [m["id"] for m in sent] == [4, 5]
    assert sent[0]["result"]["resultType"] == "input_required"
    assert sent[1]["result"]["content"] == [{"type": "text", "text": "hi Di"}]
