"""The 2026-07-28 face over real hypercorn: envelope and header checks in their order, HTTP
statuses of protocol errors, discover, cache hints, removed methods, subscriptions/listen."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import trio
import trio.testing

from tests.mcp.mcp_server_harness import (
    ACCEPT_BOTH,
    STATELESS,
    envelope,
    post_stateless,
    read_events,
    serve,
    stateless_headers,
)
from trio_sandbox.mcp import (
    Implementation,
    McpServer,
    Prompt,
    PromptMessage,
    RequestContext,
    Resource,
    ResourceContents,
    TextContent,
    ToolReturn,
)
from trio_sandbox.mcp.lowlevel import CacheHint
from trio_sandbox.mcp.protocol._headers import decode_param_header, header_text


def make_server() -> McpServer:
    server = McpServer(
        Implementation("stateless-test", "1.2"),
        list_cache=CacheHint(60_000, "public"),
        read_cache=CacheHint(5_000, "private"),
    )

    @server.tool("echo", description="echo")
    async def echo(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        await ctx.log("info", "echo ran")
        return "echoed"

    @server.tool(
        "regional",
        description="mirrors region in a header",
        input_schema={
            "type": "object",
            "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "count": {"type": "integer", "x-mcp-header": "Count"},
            },
            "required": ["region"],
        },
    )
    async def regional(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        return f"region={arguments['region']}"

    @server.tool("needs_sampling", description="needs sampling")
    async def needs_sampling(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        ctx.require_client_capabilities("sampling")
        return "sampled"

    @server.tool("change_tools", description="announces a tools list change")
    async def change_tools(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        await ctx.server.notify_list_changed("tools")
        return "changed"

    async def read(uri: str, ctx: RequestContext) -> list[ResourceContents]:
        return [ResourceContents(uri, text="hello", mime_type="text/plain")]

    server.add_resource(Resource("test://a", "a"), read)

    async def render(arguments: dict[str, str], ctx: RequestContext) -> Any:
        from trio_sandbox.mcp import GetPromptResult

        return GetPromptResult([PromptMessage("user", TextContent("hi"))])

    server.add_prompt(Prompt("greet", description="greets"), render)
    return server


async def test_discover_and_cache_hints() -> None:
    async with serve(make_server()) as served:
        response, answer = await post_stateless(served, "server/discover")
        assert response.status_code == 200
        result = answer["result"]
        assert result["supportedVersions"] == [STATELESS]
        assert result["resultType"] == "complete"
        assert result["_meta"]["io.modelcontextprotocol/serverInfo"] == {
            "name": "stateless-test",
            "version": "1.2",
        }
        assert "prompts" in result["capabilities"]
        assert (result["ttlMs"], result["cacheScope"]) == (60_000, "public")
        for method in ("tools/list", "prompts/list", "resources/list", "resources/templates/list"):
            _, answer = await post_stateless(served, method)
            got = answer["result"]
            assert (got["ttlMs"], got["cacheScope"], got["resultType"]) == (
                60_000,
                "public",
                "complete",
            ), method
        _, answer = await post_stateless(served, "resources/read", {"uri": "test://a"})
        assert (answer["result"]["ttlMs"], answer["result"]["cacheScope"]) == (5_000, "private")
        # Tool results are not cacheable.
        _, answer = await post_stateless(served, "tools/call", {"name": "echo", "arguments": {}})
        assert answer["result"]["resultType"] == "complete"
        assert "ttlMs" not in answer["result"]


def test_invalid_cache_hint_refused() -> None:
    with pytest.raises(ValueError, match="cache hint"):
        CacheHint(-1)
    with pytest.raises(ValueError, match="cache hint"):
        CacheHint(0, "shared")


async def test_unknown_resource_is_invalid_params_with_uri() -> None:
    async with serve(make_server()) as served:
        _, answer = await post_stateless(served, "resources/read", {"uri": "test://missing"})
        assert answer["error"]["code"] == -32602
        assert answer["error"]["data"] == {"uri": "test://missing"}


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("no version header", 400, -32020),
        ("no _meta", 400, -32602),
        ("_meta without protocolVersion", 400, -32602),
        ("_meta without clientCapabilities", 400, -32602),
        ("header differs from _meta", 400, -32020),
        ("unsupported version", 400, -32022),
        ("no Mcp-Method", 400, -32020),
        ("Mcp-Method differs", 400, -32020),
        ("Mcp-Method differs in case", 400, -32020),
    ],
)
async def test_envelope_and_header_refusals(case: str, status: int, code: int) -> None:
    params: dict[str, Any] = {"_meta": envelope()}
    headers = stateless_headers("tools/list", params)
    if case == "no version header":
        del headers["mcp-protocol-version"]
    elif case == "no _meta":
        params = {}
    elif case == "_meta without protocolVersion":
        del params["_meta"]["io.modelcontextprotocol/protocolVersion"]
    elif case == "_meta without clientCapabilities":
        del params["_meta"]["io.modelcontextprotocol/clientCapabilities"]
    elif case == "header differs from _meta":
        params["_meta"]["io.modelcontextprotocol/protocolVersion"] = "v999"
    elif case == "unsupported version":
        params["_meta"]["io.modelcontextprotocol/protocolVersion"] = "v999"
        headers["mcp-protocol-version"] = "v999"
    elif case == "no Mcp-Method":
        del headers["mcp-method"]
    elif case == "Mcp-Method differs":
        headers["mcp-method"] = "prompts/list"
    elif case == "Mcp-Method differs in case":
        headers["mcp-method"] = "TOOLS/LIST"
    async with serve(make_server()) as served:
        body = {"jsonrpc": "2.0", "id": 77, "method": "tools/list", "params": params}
        response = await served.client.post(served.url, json=body, headers=headers)
        assert response.status_code == status
        answer = response.json()
        assert answer["id"] == 77
        assert answer["error"]["code"] == code
        if code == -32022:
            assert answer["error"]["data"] == {"supported": [STATELESS], "requested": "v999"}


async def test_mcp_name_checks() -> None:
    async with serve(make_server()) as served:
        call = {"name": "echo", "arguments": {}}
        response, answer = await post_stateless(
            served, "tools/call", call, headers={"mcp-name": "other"}
        )
        assert (response.status_code, answer["error"]["code"]) == (400, -32020)
        response, answer = await post_stateless(
            served, "tools/call", call, drop_headers=("mcp-name",)
        )
        assert (response.status_code, answer["error"]["code"]) == (400, -32020)
        # Header names are case-insensitive (values are not).
        response, answer = await post_stateless(
            served,
            "tools/call",
            call,
            headers={"MCP-NAME": "echo", "Mcp-Method": "tools/call"},
            drop_headers=("mcp-name", "mcp-method"),
        )
        assert response.status_code == 200
        assert answer["result"]["content"][0]["text"] == "echoed"


@pytest.mark.parametrize(
    ("region_header", "accepted"),
    [
        ("Hello", True),
        ("=?base64?SGVsbG8=?=", True),
        ("=?base64?SGVsbG8?=", False),  # bad padding
        ("=?base64?SGVs!!!bG8=?=", False),  # not base64
        ("Goodbye", False),
        (None, False),
    ],
)
async def test_param_headers(region_header: str | None, accepted: bool) -> None:
    async with serve(make_server()) as served:
        headers = {"mcp-param-count": "3"}
        if region_header is not None:
            headers["mcp-param-region"] = region_header
        call = {"name": "regional", "arguments": {"region": "Hello", "count": 3}}
        response, answer = await post_stateless(served, "tools/call", call, headers=headers)
        if accepted:
            assert response.status_code == 200
            assert answer["result"]["content"][0]["text"] == "region=Hello"
        else:
            assert (response.status_code, answer["error"]["code"]) == (400, -32020)


async def test_param_header_without_argument_refused() -> None:
    async with serve(make_server()) as served:
        call = {"name": "regional", "arguments": {"region": "eu"}}
        headers = {"mcp-param-region": "eu", "mcp-param-count": "1"}
        response, answer = await post_stateless(served, "tools/call", call, headers=headers)
        assert (response.status_code, answer["error"]["code"]) == (400, -32020)


def test_param_header_encoding() -> None:
    assert header_text(True) == "true"
    assert header_text(3.0) == "3"
    assert header_text(2.5) == "2.5"
    assert header_text(None) is None
    encoded = "=?base64?" + base64.b64encode("Région\t1".encode()).decode() + "?="
    assert decode_param_header(encoded) == "Région\t1"
    assert decode_param_header("=?base64?SGVsbG8=") == "=?base64?SGVsbG8="


@pytest.mark.parametrize(
    "method",
    ["initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"],
)
async def test_removed_methods_are_404(method: str) -> None:
    async with serve(make_server()) as served:
        params = {"uri": "test://a"} if method.startswith("resources/") else {}
        response, answer = await post_stateless(served, method, params, request_id=500)
        assert response.status_code == 404
        assert answer == {
            "jsonrpc": "2.0",
            "id": 500,
            "error": answer["error"],
        }
        assert answer["error"]["code"] == -32601


async def test_missing_client_capability() -> None:
    async with serve(make_server()) as served:
        call = {"name": "needs_sampling", "arguments": {}}
        response, answer = await post_stateless(served, "tools/call", call, capabilities={})
        assert response.status_code == 400
        assert answer["error"]["code"] == -32021
        assert answer["error"]["data"] == {"requiredCapabilities": {"sampling": {}}}
        response, answer = await post_stateless(served, "tools/call", call)
        assert answer["result"]["content"][0]["text"] == "sampled"


async def test_logging_only_when_asked_in_meta() -> None:
    async with serve(make_server()) as served:
        call = {"name": "echo", "arguments": {}}
        response, _ = await post_stateless(served, "tools/call", call)
        assert response.headers["content-type"] == "application/json"
        meta = {**envelope(), "io.modelcontextprotocol/logLevel": "debug"}
        response, answer = await post_stateless(served, "tools/call", {**call, "_meta": meta})
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "notifications/message" in response.text
        assert answer["result"]["content"][0]["text"] == "echoed"


async def test_subscriptions_listen_filters_and_tags() -> None:
    server = make_server()
    async with serve(server) as served:
        received: dict[str, list[dict[str, Any]]] = {"tools": [], "prompts": []}
        acknowledged = trio.Semaphore(0)
        tools_changed = trio.Event()

        async def listen(kind: str, listen_id: int) -> None:
            params = {"notifications": {f"{kind}ListChanged": True}, "_meta": envelope()}
            body = {
                "jsonrpc": "2.0",
                "id": listen_id,
                "method": "subscriptions/listen",
                "params": params,
            }
            headers = stateless_headers("subscriptions/listen", params)
            async with served.client.stream(
                "POST", served.url, json=body, headers=headers
            ) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                async for event in read_events(response):
                    if not event.data.strip():
                        continue
                    message = event.message
                    assert message["params"]["_meta"] == {
                        "io.modelcontextprotocol/subscriptionId": listen_id
                    }
                    if message["method"] == "notifications/subscriptions/acknowledged":
                        assert message["params"]["notifications"] == {f"{kind}ListChanged": True}
                        acknowledged.release()
                    else:
                        received[kind].append(message)
                        if kind == "tools":
                            tools_changed.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen, "tools", 41)
            nursery.start_soon(listen, "prompts", 42)
            await acknowledged.acquire()
            await acknowledged.acquire()
            assert server.listeners.count == 2
            _, answer = await post_stateless(
                served, "tools/call", {"name": "change_tools", "arguments": {}}
            )
            assert answer["result"]["content"][0]["text"] == "changed"
            with trio.fail_after(5):
                await tools_changed.wait()
            # Give a wrongly delivered prompts notification time to arrive.
            await trio.testing.wait_all_tasks_blocked(0.05)
            nursery.cancel_scope.cancel()
        assert [m["method"] for m in received["tools"]] == ["notifications/tools/list_changed"]
        assert received["prompts"] == []
        # The server noticed both clients leaving.
        await trio.testing.wait_all_tasks_blocked(0.05)
        assert server.listeners.count == 0


async def test_listen_ends_with_result_on_shutdown() -> None:
    server = make_server()
    async with serve(server) as served:
        params = {"notifications": {"toolsListChanged": True}, "_meta": envelope()}
        body = {"jsonrpc": "2.0", "id": 9, "method": "subscriptions/listen", "params": params}
        headers = stateless_headers("subscriptions/listen", params)
        messages: list[dict[str, Any]] = []
        async with served.client.stream("POST", served.url, json=body, headers=headers) as response:
            async for event in read_events(response):
                if not event.data.strip():
                    continue
                messages.append(event.message)
                if len(messages) == 1:
                    served.app.close()
        assert messages[-1] == {
            "jsonrpc": "2.0",
            "id": 9,
            "result": {
                "_meta": {"io.modelcontextprotocol/subscriptionId": 9},
                "resultType": "complete",
            },
        }


async def test_accept_must_list_both() -> None:
    async with serve(make_server()) as served:
        params = {"_meta": envelope()}
        headers = {**stateless_headers("tools/list", params), "accept": "application/json"}
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": params}
        response = await served.client.post(served.url, json=body, headers=headers)
        assert response.status_code == 406
        headers["accept"] = ACCEPT_BOTH
        response = await served.client.post(served.url, json=body, headers=headers)
        assert response.status_code == 200
