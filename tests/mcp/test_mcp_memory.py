"""The in-process memory transport passes message objects, no JSON: each message is copied as an
encode and decode would give it, so the two ends share no mutable value and a request keeps the
bound on one message."""

from __future__ import annotations

import enum
from typing import Any

import pytest
import trio

from trio_sandbox.mcp import (
    INVALID_PARAMS,
    CallToolResult,
    ErrorObject,
    ErrorResponse,
    Implementation,
    McpConnectionError,
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


# --- each request served in its caller's task ---------------------------------------------------

ERAS = ("2025-11-25", "2026-07-28")


def waiting_server(callers: int) -> tuple[McpServer, dict[str, Any]]:
    """A server whose ``meet`` returns only once ``callers`` calls are inside it at once, and
    whose ``wait`` waits until cancelled (and says so)."""
    server = McpServer(Implementation("memory-test", "1"))
    seen: dict[str, Any] = {"inside": 0, "all_in": trio.Event(), "cancelled": trio.Event()}

    @server.tool("meet", description="waits for the others")
    async def meet(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        seen["inside"] += 1
        if seen["inside"] == callers:
            seen["all_in"].set()
        await seen["all_in"].wait()
        return "met"

    @server.tool("wait", description="waits until cancelled")
    async def wait(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        try:
            await trio.sleep_forever()
        finally:
            seen["cancelled"].set()

    @server.tool("progress", description="reports progress, then asks the client")
    async def progress(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        await ctx.report_progress(1, 2, "half")
        answer = await ctx.elicit("name?", {"type": "object", "properties": {}})
        await ctx.report_progress(2, 2, "done")
        return f"answer: {answer.get('content')}"

    return server, seen


@pytest.mark.parametrize("version", ERAS)
async def test_in_process_calls_run_concurrently(version: str) -> None:
    # Each call runs in its caller's task: 20 callers are all inside the tool at once (were
    # they served one after another, the first would wait for the others forever).
    server, _ = waiting_server(20)
    results: list[str] = []
    async with open_mcp_client(memory_transport(server), protocol_version=version) as client:

        async def call() -> None:
            results.append((await client.call_tool("meet", {})).text_content)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(call)
    assert results == ["met"] * 20


@pytest.mark.parametrize("version", ERAS)
async def test_cancelling_the_caller_cancels_its_request_in_process(version: str) -> None:
    server, seen = waiting_server(1)
    async with open_mcp_client(memory_transport(server), protocol_version=version) as client:
        with trio.move_on_after(0.2) as scope:
            await client.call_tool("wait", {})
        assert scope.cancelled_caught
        assert seen["cancelled"].is_set()
        # Cancelling the task is the cancellation; the notice is still said (and finds nothing
        # left to cancel), for a request served in a task of the transport's needs it.
        assert client.cancel_notifications_sent == 1
        assert (await client.call_tool("meet", {})).text_content == "met"


async def test_progress_and_questions_reach_the_caller_in_process() -> None:
    server, _ = waiting_server(1)
    notes: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append((progress, total, message))

    async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
        return {"action": "accept", "content": {"name": "trio"}}

    async with open_mcp_client(
        memory_transport(server), protocol_version="2025-11-25", elicitation=elicitation
    ) as client:
        with trio.fail_after(5):
            result = await client.call_tool("progress", {}, progress=on_progress)
    assert result.text_content == "answer: {'name': 'trio'}"
    assert notes == [(1.0, 2.0, "half"), (2.0, 2.0, "done")]


async def test_a_call_in_flight_when_the_client_closes_fails_clearly() -> None:
    server, seen = waiting_server(1)
    failure: list[BaseException] = []
    with trio.fail_after(5):
        async with (
            trio.open_nursery() as nursery,
            open_mcp_client(memory_transport(server)) as client,
        ):

            async def call() -> None:
                try:
                    await client.call_tool("wait", {})
                except McpConnectionError as exc:
                    failure.append(exc)

            nursery.start_soon(call)
            await trio.sleep(0.1)
    assert seen["cancelled"].is_set()
    assert [type(exc) for exc in failure] == [McpConnectionError]
    assert "closed" in str(failure[0])


async def test_a_request_the_session_drops_unanswered_gets_an_error_in_process() -> None:
    server = McpServer(Implementation("memory-test", "1"))

    @server.tool("drop", description="ends its own session under it")
    async def drop(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        server.close_session(ctx.session)
        await trio.sleep_forever()
        raise AssertionError("not reached")

    async with open_mcp_client(memory_transport(server), protocol_version="2025-11-25") as client:
        with trio.fail_after(5), pytest.raises(McpError, match="unanswered"):
            await client.call_tool("drop", {})


async def test_the_request_bound_holds_in_process() -> None:
    server, _ = waiting_server(1)
    async with open_mcp_client(memory_transport(server)) as client:
        with pytest.raises(McpError, match=r"over the \d+-byte limit of one message"):
            await client.call_tool("meet", {"big": "x" * (5 * 1024 * 1024)})
        assert (await client.call_tool("meet", {})).text_content == "met"


async def test_a_failing_progress_callback_fails_its_own_call_in_process() -> None:
    # The callback runs in the caller's task, inside the server's report_progress: its error
    # must reach the caller as its own (as over HTTP), end the request, and spare the server.
    server = McpServer(Implementation("memory-test", "1"))
    ended = trio.Event()

    @server.tool("report", description="reports progress, then would go on")
    async def report(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        try:
            await ctx.report_progress(1, 2, "half")
            await trio.sleep(1)
            return "went on"
        except trio.Cancelled:
            ended.set()
            raise

    async def failing(progress: float, total: float | None, message: str | None) -> None:
        raise ValueError("the caller's own bug")

    async with open_mcp_client(memory_transport(server)) as client:
        with trio.fail_after(5):
            with pytest.raises(ValueError, match="the caller's own bug"):
                await client.call_tool("report", {}, progress=failing)
            await ended.wait()  # the request runs beside its caller: it is cancelled next
        assert (await client.call_tool("report", {})).text_content == "went on"


async def test_progress_from_a_tools_own_tasks_reaches_the_caller_as_it_comes() -> None:
    # A request whose progress the caller follows runs beside it: a note sent from any task
    # of the server's (here the tool's own children) runs the callback while the tool runs.
    server = McpServer(Implementation("memory-test", "1"))
    heard = trio.Event()
    seen: list[float] = []

    cancelled = trio.Event()

    @server.tool("children", description="reports from child tasks, then waits to be heard")
    async def children(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        async with trio.open_nursery() as nursery:
            for index in range(100):  # within the bound on notes queued for one request
                nursery.start_soon(ctx.report_progress, index, 100)
        await heard.wait()  # only a callback run before the tool returns can set it
        if arguments.get("then_wait"):
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                cancelled.set()
                raise
        return "done"

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)
        if len(seen) == 100:
            heard.set()

    async with open_mcp_client(memory_transport(server)) as client:
        with trio.fail_after(5):
            result = await client.call_tool("children", {}, progress=on_progress)
        assert result.text_content == "done"
        assert sorted(seen) == [float(index) for index in range(100)]
        # Cancelled there, too: the notice reaches the request in the transport's task.
        seen.clear()
        with trio.move_on_after(0.5):
            await client.call_tool("children", {"then_wait": True}, progress=on_progress)
        with trio.fail_after(5):
            await cancelled.wait()


async def test_closing_the_client_waits_for_its_requests_to_unwind() -> None:
    server = McpServer(Implementation("memory-test", "1"))
    order: list[str] = []
    closing = McpServer.close_session

    def close_session(self: McpServer, session: Any) -> None:
        order.append("session closed")
        closing(self, session)

    @server.tool("slowstop", description="cleans up slowly when cancelled")
    async def slowstop(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.2)
            order.append("cleaned up")
        raise AssertionError("not reached")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(McpServer, "close_session", close_session)
        async with trio.open_nursery() as outer:
            async with open_mcp_client(memory_transport(server)) as client:

                async def call() -> None:
                    with pytest.raises(McpConnectionError):
                        await client.call_tool("slowstop", {})
                    order.append("caller failed")

                outer.start_soon(call)
                await trio.sleep(0.05)
            order.append("client closed")
    assert order == ["cleaned up", "caller failed", "session closed", "client closed"]
