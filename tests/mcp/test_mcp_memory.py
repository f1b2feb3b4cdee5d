"""The in-process memory transport passes message objects, no JSON: each message is copied as an
encode and decode would give it, so the two ends share no mutable value and a request keeps the
bound on one message."""

from __future__ import annotations

import enum
from typing import Any

import pytest

from trio_sandbox.mcp import (
    INVALID_PARAMS,
    CallToolResult,
    ErrorObject,
    ErrorResponse,
    Implementation,
    McpError,
    McpServer,
    Notification,
    Request,
    RequestContext,
    Response,
    ToolReturn,
    memory_transport,
    open_mcp_client,
)
from trio_sandbox.mcp.lowlevel import decode_message, dump_message, parse_json
from trio_sandbox.mcp.protocol._jsonrpc import copy_message, dump_bounded


class Level(enum.IntEnum):
    HIGH = 2


def round_trip(message: Any) -> Any:
    return decode_message(parse_json(dump_message(message)))


@pytest.mark.parametrize(
    "message",
    [
        Request(
            1, "tools/call", {"name": "t", "arguments": {"xs": (1, 2.5, None, True), "s": "é"}}
        ),
        Request("a", "ping"),
        Notification("notifications/progress", {"progress": Level.HIGH, "nested": [{"k": "v"}]}),
        Response(7, {"content": [{"type": "text", "text": "x"}], "keys": {1: "one", None: 0}}),
        ErrorResponse(None, ErrorObject(INVALID_PARAMS, "bad", {"why": ("a", "b")})),
        ErrorResponse(3, ErrorObject(INVALID_PARAMS, "bad")),
    ],
)
def test_a_copy_is_what_an_encode_and_decode_would_give(message: Any) -> None:
    copied = copy_message(message)
    assert copied == round_trip(message)
    assert dump_message(copied) == dump_message(round_trip(message))


def test_a_copy_shares_no_mutable_value() -> None:
    arguments = {"list": [{"deep": "value"}], "object": {"k": 1}}
    request = Request(1, "tools/call", {"name": "t", "arguments": arguments})
    copied = copy_message(request)
    assert isinstance(copied, Request)
    assert copied.params is not None
    copied.params["arguments"]["list"][0]["deep"] = "changed"
    copied.params["arguments"]["object"]["k"] = 2
    assert arguments == {"list": [{"deep": "value"}], "object": {"k": 1}}


def test_what_json_cannot_encode_fails_as_encoding_would() -> None:
    request = Request(1, "tools/call", {"name": "t", "arguments": {"s": {1, 2}}})
    with pytest.raises(TypeError):
        dump_message(request)
    with pytest.raises(TypeError):
        copy_message(request)


def test_a_message_over_the_bound_fails_as_dump_bounded_does() -> None:
    request = Request(1, "tools/call", {"name": "t", "arguments": {"s": "é" * 3000}})
    limit = len(dump_message(request)) - 1
    with pytest.raises(McpError) as encoded:
        dump_bounded(request, limit)
    with pytest.raises(McpError) as copied:
        copy_message(request, limit)
    assert copied.value.message == encoded.value.message
    assert copy_message(request, limit + 1) == round_trip(request)


async def test_the_two_ends_of_a_memory_transport_share_nothing() -> None:
    server = McpServer(Implementation("memory-test", "1"))
    kept: dict[str, Any] = {"arguments": None, "result": {"items": [1, 2]}}

    @server.tool("keep", description="keeps its arguments, returns what it keeps")
    async def keep(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        kept["arguments"] = arguments
        return CallToolResult(structured_content=kept["result"])

    sent = {"list": [1]}
    async with open_mcp_client(memory_transport(server)) as client:
        result = await client.call_tool("keep", sent)
        assert result.structured_content == {"items": [1, 2]}
        sent["list"].append(2)
        assert kept["arguments"] == {"list": [1]}
        kept["arguments"]["list"].append(3)
        assert sent == {"list": [1, 2]}
        assert result.structured_content is not kept["result"]
        kept["result"]["items"].append(3)
        assert result.structured_content == {"items": [1, 2]}
