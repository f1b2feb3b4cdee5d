"""SSE polling and resumption over real hypercorn: priming events, a server-closed POST stream
resumed with GET + Last-Event-ID, and standalone-stream messages kept for a reconnecting client."""

from __future__ import annotations

from typing import Any

import trio

from tests.mcp.mcp_server_harness import (
    Served,
    SseEvent,
    initialize,
    read_events,
    serve,
    session_headers,
)
from trio_sandbox.mcp import HttpSettings, Implementation, McpServer, RequestContext, ToolReturn


def make_server(release: trio.Event, closed: list[bool]) -> McpServer:
    server = McpServer(Implementation("sse-test", "1"))

    @server.tool("poll", description="closes its stream, then answers")
    async def poll(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        await ctx.report_progress(1, 2)
        closed.append(await ctx.close_sse_stream())
        await ctx.report_progress(2, 2)
        await release.wait()
        return "polled"

    return server


async def _collect(
    served: Served, method: str, headers: dict[str, str], **kw: Any
) -> list[SseEvent]:
    events: list[SseEvent] = []
    async with served.client.stream(method, served.url, headers=headers, **kw) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"] == "text/event-stream"
        async for event in read_events(response):
            events.append(event)
    return events


def _call(request_id: int) -> dict[str, Any]:
    params = {"name": "poll", "arguments": {}, "_meta": {"progressToken": "p"}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


async def test_closed_post_stream_resumes_with_last_event_id() -> None:
    release, closed = trio.Event(), list[bool]()
    settings = HttpSettings(sse_retry_ms=250)
    async with serve(make_server(release, closed), settings) as served:
        headers = session_headers(await initialize(served))
        # The server ends the POST response before the tool's result.
        posted = await _collect(served, "POST", headers, json=_call(7))
        priming = posted[0]
        assert priming.id is not None
        assert (priming.retry, priming.data) == (250, "")
        assert [e.message["method"] for e in posted[1:]] == ["notifications/progress"]
        last_id = posted[-1].id
        assert last_id is not None
        release.set()
        get_headers = {**headers, "accept": "text/event-stream", "last-event-id": last_id}
        resumed = await _collect(served, "GET", get_headers)
        assert closed == [True]
        messages = [e.message for e in resumed if e.data]
        # Only what the client missed, then the result; every event can be resumed from.
        assert [m.get("method") for m in messages] == ["notifications/progress", None]
        assert messages[0]["params"]["progress"] == 2
        assert messages[1] == {
            "jsonrpc": "2.0",
            "id": 7,
            "result": {"content": [{"type": "text", "text": "polled"}]},
        }
        assert all(e.id for e in resumed if e.data)
        # Resuming from the priming event replays the whole stream.
        from_start = {**get_headers, "last-event-id": priming.id}
        replayed = [e.message for e in await _collect(served, "GET", from_start) if e.data]
        assert [m.get("method") for m in replayed] == [
            "notifications/progress",
            "notifications/progress",
            None,
        ]


async def test_older_clients_keep_their_stream() -> None:
    release, closed = trio.Event(), list[bool]()
    release.set()
    async with serve(make_server(release, closed)) as served:
        headers = session_headers(await initialize(served, "2025-06-18"), "2025-06-18")
        posted = await _collect(served, "POST", headers, json=_call(3))
        # No priming event id to resume from, so the server does not close the stream.
        assert closed == [False]
        assert all(e.data for e in posted)
        assert posted[-1].message["result"]["content"][0]["text"] == "polled"


async def test_standalone_stream_keeps_what_a_client_missed() -> None:
    server = make_server(trio.Event(), [])
    async with serve(server) as served:
        headers = session_headers(await initialize(served))
        get_headers = {**headers, "accept": "text/event-stream"}
        opened: list[SseEvent] = []
        # Leaving by cancellation (not break) unwinds httpx's nested stream generators.
        with trio.CancelScope() as reading:
            async with served.client.stream("GET", served.url, headers=get_headers) as response:
                async for event in read_events(response):
                    opened.append(event)
                    if len(opened) == 1:
                        await server.notify_list_changed("tools")
                    else:
                        reading.cancel()
        assert opened[0].data == ""
        assert opened[1].message["method"] == "notifications/tools/list_changed"
        seen = opened[1].id
        assert seen is not None
        # Disconnected: these wait for the client.
        await server.notify_list_changed("prompts")
        await server.notify_list_changed("resources")
        resumed: list[dict[str, Any]] = []
        with trio.CancelScope() as reading, trio.fail_after(5):
            resume_headers = {**get_headers, "last-event-id": seen}
            async with served.client.stream("GET", served.url, headers=resume_headers) as again:
                async for event in read_events(again):
                    if event.data:
                        resumed.append(event.message)
                    if len(resumed) == 2:
                        reading.cancel()
        assert [m["method"] for m in resumed] == [
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
        ]


async def test_unknown_event_id_is_404() -> None:
    async with serve(make_server(trio.Event(), [])) as served:
        headers = session_headers(await initialize(served))
        for last_id in ("99:0", "nonsense", "1:x"):
            response = await served.client.get(
                served.url,
                headers={**headers, "accept": "text/event-stream", "last-event-id": last_id},
            )
            assert response.status_code == 404, last_id


async def test_one_standalone_stream_per_session() -> None:
    """A newer GET takes the standalone stream over and the older response ends (a client that
    reconnected before its old connection was seen to end is served)."""
    async with serve(make_server(trio.Event(), [])) as served:
        headers = {**session_headers(await initialize(served)), "accept": "text/event-stream"}
        async with served.client.stream("GET", served.url, headers=headers) as first:
            assert first.status_code == 200
            async with served.client.stream("GET", served.url, headers=headers) as second:
                assert second.status_code == 200
                with trio.fail_after(5):
                    await first.aread()
