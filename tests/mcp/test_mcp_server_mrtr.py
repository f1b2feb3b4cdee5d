"""Handlers that ask the client for input: input_required round trips with a signed requestState
in the stateless era, real server-to-client requests on the response stream in the handshake
era, over real hypercorn."""

from __future__ import annotations

from typing import Any

import pytest

from tests.mcp.mcp_server_harness import (
    initialize,
    post_stateless,
    read_events,
    serve,
    session_headers,
)
from trio_sandbox.mcp import (
    Implementation,
    InputRequest,
    McpError,
    McpServer,
    RequestContext,
    ToolReturn,
)
from trio_sandbox.mcp.lowlevel import RequestStateCodec

NAME_FORM = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def make_server(codec: RequestStateCodec | None = None) -> McpServer:
    server = McpServer(Implementation("mrtr-test", "1"))
    if codec is not None:
        server.state_codec = codec

    @server.tool("greet", description="asks a name")
    async def greet(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        answer = await ctx.elicit("What is your name?", NAME_FORM)
        return f"Hello, {answer['content']['name']}!"

    @server.tool("two_rounds", description="asks twice")
    async def two_rounds(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        first = await ctx.ask({"name": InputRequest.elicitation("Name?", NAME_FORM)})
        second = await ctx.ask({"model": InputRequest.sampling_text("Colour?")})
        name = first["name"]["content"]["name"]
        return f"{name} likes {second['model']['content']['text']}"

    @server.tool("other", description="asks a name too")
    async def other(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        await ctx.elicit("Name?", NAME_FORM)
        return "other"

    return server


def accept(**content: Any) -> dict[str, Any]:
    return {"action": "accept", "content": content}


def said(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": {"type": "text", "text": text}, "model": "m"}


async def test_stateless_round_trip() -> None:
    async with serve(make_server()) as served:
        call = {"name": "greet", "arguments": {}}
        _, first = await post_stateless(served, "tools/call", call, request_id=1)
        result = first["result"]
        assert result["resultType"] == "input_required"
        assert result["inputRequests"] == {
            "elicit": {
                "method": "elicitation/create",
                "params": {"message": "What is your name?", "requestedSchema": NAME_FORM},
            }
        }
        assert isinstance(result["requestState"], str)
        retry = {
            **call,
            "inputResponses": {"elicit": accept(name="Alice"), "unrelated": {"x": 1}},
            "requestState": result["requestState"],
        }
        _, second = await post_stateless(served, "tools/call", retry, request_id=2)
        assert second["result"] == {
            "content": [{"type": "text", "text": "Hello, Alice!"}],
            "resultType": "complete",
        }


async def test_answers_of_earlier_rounds_travel_in_the_state() -> None:
    async with serve(make_server()) as served:
        call = {"name": "two_rounds", "arguments": {}}
        _, r1 = await post_stateless(served, "tools/call", call, request_id=1)
        assert list(r1["result"]["inputRequests"]) == ["name"]
        r2_params = {
            **call,
            "inputResponses": {"name": accept(name="Bo")},
            "requestState": r1["result"]["requestState"],
        }
        _, r2 = await post_stateless(served, "tools/call", r2_params, request_id=2)
        assert r2["result"]["resultType"] == "input_required"
        assert list(r2["result"]["inputRequests"]) == ["model"]
        assert r2["result"]["inputRequests"]["model"]["method"] == "sampling/createMessage"
        assert r2["result"]["requestState"] != r1["result"]["requestState"]
        # The last round sends only the last answer; the first comes back from the state.
        r3_params = {
            **call,
            "inputResponses": {"model": said("blue")},
            "requestState": r2["result"]["requestState"],
        }
        _, r3 = await post_stateless(served, "tools/call", r3_params, request_id=3)
        assert r3["result"]["content"][0]["text"] == "Bo likes blue"


async def test_tampered_or_misdirected_state_refused() -> None:
    async with serve(make_server()) as served:
        _, r1 = await post_stateless(served, "tools/call", {"name": "two_rounds", "arguments": {}})
        answers = {"name": accept(name="Bo")}
        state = r1["result"]["requestState"]
        _, r2 = await post_stateless(
            served,
            "tools/call",
            {"name": "two_rounds", "inputResponses": answers, "requestState": state},
        )
        sealed = r2["result"]["requestState"]
        body, _, mac = sealed.partition(".")
        for forged in (sealed + "-TAMPERED", body + "." + mac[::-1], "garbage", 17):
            params: dict[str, Any] = {
                "name": "two_rounds",
                "inputResponses": {},
                "requestState": forged,
            }
            _, answer = await post_stateless(served, "tools/call", params)
            assert answer["error"]["code"] == -32602, forged
            assert "integrity" in answer["error"]["message"]
        # A state sealed for one tool is refused by another.
        params = {"name": "other", "inputResponses": answers, "requestState": sealed}
        _, answer = await post_stateless(served, "tools/call", params)
        assert answer["error"]["code"] == -32602
        assert "another request" in answer["error"]["message"]


async def test_missing_wrong_or_malformed_answers() -> None:
    async with serve(make_server()) as served:
        responses: Any
        for responses in (None, {}, {"wrong_key": accept(name="x")}):
            params: dict[str, Any] = {"name": "greet", "inputResponses": responses}
            _, answer = await post_stateless(served, "tools/call", params)
            assert answer["result"]["resultType"] == "input_required"
        malformed: Any
        for malformed in (12345, {"action": "maybe"}, {"action": "accept", "content": 3}):
            params = {"name": "greet", "inputResponses": {"elicit": malformed}}
            _, answer = await post_stateless(served, "tools/call", params)
            assert answer["error"]["code"] == -32602
        params = {"name": "greet", "inputResponses": [1]}
        _, answer = await post_stateless(served, "tools/call", params)
        assert answer["error"]["code"] == -32602


async def test_questions_need_client_capabilities() -> None:
    async with serve(make_server()) as served:
        params = {"name": "greet", "arguments": {}}
        response, answer = await post_stateless(
            served, "tools/call", params, capabilities={"sampling": {}}
        )
        assert response.status_code == 400
        assert answer["error"]["code"] == -32021
        assert answer["error"]["data"] == {"requiredCapabilities": {"elicitation": {}}}


async def test_expired_state_refused() -> None:
    async with serve(make_server(RequestStateCodec(max_age_seconds=-1))) as served:
        _, r1 = await post_stateless(served, "tools/call", {"name": "greet"})
        params = {
            "name": "greet",
            "inputResponses": {"elicit": accept(name="A")},
            "requestState": r1["result"]["requestState"],
        }
        _, answer = await post_stateless(served, "tools/call", params)
        assert answer["error"]["code"] == -32602
        assert "expired" in answer["error"]["message"]


def test_codec_keys_do_not_mix() -> None:
    mine, theirs = RequestStateCodec(), RequestStateCodec()
    token = mine.seal("tools/call greet", {"k": {"action": "cancel"}})
    assert mine.open("tools/call greet", token) == {"k": {"action": "cancel"}}
    with pytest.raises(McpError, match="integrity"):
        theirs.open("tools/call greet", token)
    shared = RequestStateCodec(key=mine.key)
    assert shared.open("tools/call greet", token) == {"k": {"action": "cancel"}}


async def test_handshake_era_asks_on_the_response_stream() -> None:
    async with serve(make_server()) as served:
        session_id = await initialize(served)
        headers = session_headers(session_id)
        body = {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "tools/call",
            "params": {"name": "two_rounds", "arguments": {}},
        }
        asked: list[str] = []
        final: dict[str, Any] | None = None
        async with served.client.stream("POST", served.url, json=body, headers=headers) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for event in read_events(stream):
                if not event.data.strip():
                    continue
                message = event.message
                if "method" in message:
                    asked.append(message["method"])
                    answer = (
                        accept(name="Cy")
                        if message["method"] == "elicitation/create"
                        else said("green")
                    )
                    reply = {"jsonrpc": "2.0", "id": message["id"], "result": answer}
                    posted = await served.client.post(served.url, json=reply, headers=headers)
                    assert posted.status_code == 202
                elif message.get("id") == 5:
                    final = message
        assert asked == ["elicitation/create", "sampling/createMessage"]
        assert final is not None
        # Handshake-era results carry no resultType.
        assert final["result"] == {"content": [{"type": "text", "text": "Cy likes green"}]}
