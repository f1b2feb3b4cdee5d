"""The proxy's routing and forwarding, with real HTTP faces and in-process or HTTP upstreams.

Names, collisions, prompts, resources, pagination, progress to the right request, cancellation
crossing exactly once, list_changed, both protocol eras on either side, questions relayed to the
caller, a forgotten upstream session renewed once, and an unreachable upstream named in errors.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.proxy.proxy_harness import build_upstream, http_served, proxy_running
from trio_sandbox.mcp import (
    INVALID_PARAMS,
    Implementation,
    JsonObject,
    McpError,
    McpServer,
    Notification,
    Request,
    RequestContext,
    open_mcp_client,
)
from trio_sandbox.proxy import (
    HttpUpstream,
    InProcessUpstream,
    NameCollisionError,
    UpstreamSpec,
    UpstreamState,
    exposed_name,
)

ERAS = ["2025-06-18", "2026-07-28"]


async def test_tools_are_prefixed_sorted_and_routed_with_bare_names() -> None:
    alpha, alpha_seen = build_upstream("alpha", tools=("zeta", "echo"))
    beta, beta_seen = build_upstream("beta", tools=("echo",))
    long_name = "t" * 70
    gamma, _ = build_upstream("gamma", tools=(long_name,))
    upstreams = [
        InProcessUpstream("beta", beta),
        InProcessUpstream("alpha", alpha),
        InProcessUpstream("gamma", gamma, prefix=""),
    ]
    async with proxy_running(upstreams) as proxy, open_mcp_client(proxy.http_url) as client:
        names = [tool.name for tool in await client.list_tools()]
        assert names == sorted(names)
        assert {"alpha__zeta", "alpha__echo", "beta__echo", "alpha__wait"} <= set(names)
        shortened = exposed_name("", long_name)
        assert len(shortened) == 64
        assert shortened in names
        assert long_name not in names
        assert all(len(name) <= 64 for name in names)
        result = await client.call_tool("beta__echo", {"text": "hi"})
        assert result.text_content == "beta:echo:hi"
        assert (await client.call_tool(shortened, {"text": "x"})).text_content == (
            f"gamma:{long_name}:x"
        )
        assert beta_seen.finished == ["echo"]
        assert alpha_seen.finished == []


async def test_prefix_collision_is_refused_at_startup() -> None:
    one, _ = build_upstream("one")
    two, _ = build_upstream("two")
    refused = pytest.RaisesExc(NameCollisionError, match="'one'.*'two'")
    with pytest.RaisesGroup(refused, flatten_subgroups=True):
        async with proxy_running(
            [InProcessUpstream("one", one, prefix="p"), InProcessUpstream("two", two, prefix="p")]
        ):
            pass


async def test_tool_collision_is_withheld_named_and_shown_in_statuses() -> None:
    one, _ = build_upstream("one", tools=("shared", "mine"))
    two, _ = build_upstream("two", tools=("shared", "yours"))
    upstreams = [InProcessUpstream("one", one, prefix=""), InProcessUpstream("two", two, prefix="")]
    async with proxy_running(upstreams) as proxy, open_mcp_client(proxy.http_url) as client:
        names = {tool.name for tool in await client.list_tools()}
        assert {"mine", "yours"} <= names
        assert "shared" not in names
        with pytest.raises(McpError) as raised:
            await client.call_tool("shared", {})
        assert raised.value.code == INVALID_PARAMS
        assert "'one'" in raised.value.message
        assert "'two'" in raised.value.message
        statuses = {status.name: status for status in proxy.statuses()}
        for name in ("one", "two"):
            assert any("'shared'" in text for text in statuses[name].collisions)
            assert statuses[name].to_json()["collisions"]


async def test_prompts_are_prefixed_and_resources_routed_by_owner() -> None:
    one, _ = build_upstream("one")
    two, _ = build_upstream("two")
    upstreams = [InProcessUpstream("one", one), InProcessUpstream("two", two)]
    async with proxy_running(upstreams) as proxy, open_mcp_client(proxy.http_url) as client:
        prompts = [prompt.name for prompt in await client.list_prompts()]
        assert prompts == ["one__greet", "two__greet"]
        rendered = await client.get_prompt("two__greet")
        assert rendered["messages"][0]["content"]["text"] == "hello from two"
        uris = {resource.uri for resource in await client.list_resources()}
        assert uris == {"one://doc", "two://doc"}
        for owner in ("one", "two"):
            contents = await client.read_resource(f"{owner}://doc")
            assert contents[0].text == f"doc of {owner}"
            templated = await client.read_resource(f"{owner}://t/42")
            assert templated[0].text == f"{owner} template 42"
        with pytest.raises(McpError):
            await client.read_resource("nobody://doc")


async def test_pagination_end_to_end_with_the_proxys_own_cursors() -> None:
    many = tuple(f"tool{i:02}" for i in range(7))
    one, _ = build_upstream("one", tools=many, page_size=2)
    two, _ = build_upstream("two", tools=many, page_size=3)
    upstreams = [InProcessUpstream("one", one), InProcessUpstream("two", two)]
    async with (
        proxy_running(upstreams, page_size=4) as proxy,
        open_mcp_client(proxy.http_url) as client,
    ):
        everything = [tool.name for tool in await client.list_tools()]
        assert len(everything) == 2 * (len(many) + 3)  # + wait, progress, sample
        assert everything == sorted(everything)
        pages: list[list[str]] = []
        cursor: str | None = None
        while True:
            result = await client.request("tools/list", {"cursor": cursor} if cursor else None)
            pages.append([tool["name"] for tool in result["tools"]])
            cursor = result.get("nextCursor")
            if cursor is None:
                break
        assert all(len(page) <= 4 for page in pages)
        assert len(pages) > 2
        assert [name for page in pages for name in page] == everything
        with pytest.raises(McpError) as raised:
            await client.request("tools/list", {"cursor": "not-a-cursor"})
        assert raised.value.code == INVALID_PARAMS


@pytest.mark.parametrize("downstream", ERAS)
async def test_progress_reaches_the_right_downstream_request(downstream: str) -> None:
    one, _ = build_upstream("one")
    async with (
        http_served(one) as (bound, _),
        proxy_running([HttpUpstream("one", bound.url)]) as proxy,
        open_mcp_client(proxy.http_url, protocol_version=downstream) as client,
    ):
        heard: dict[str, list[str | None]] = {"a": [], "b": []}

        async def call(tag: str) -> None:
            async def progress(done: float, total: float | None, message: str | None) -> None:
                heard[tag].append(message)

            result = await client.call_tool("one__progress", {"text": tag}, progress=progress)
            assert result.text_content == "done"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "a")
            nursery.start_soon(call, "b")
        assert heard == {"a": ["a-1", "a-2", "a-3"], "b": ["b-1", "b-2", "b-3"]}


@pytest.mark.parametrize("downstream", ERAS)
@pytest.mark.parametrize("upstream_era", ERAS)
async def test_cancellation_crosses_the_proxy_exactly_once(
    downstream: str, upstream_era: str
) -> None:
    """Downstream cancels (notifications/cancelled, or a closed stream in the stateless era):
    the upstream's handler is cancelled once, the proxy tells the upstream at most once, and the
    proxy sends nothing back for the cancelled request."""
    one, seen = build_upstream("one")
    async with (
        http_served(one) as (bound, _),
        proxy_running([HttpUpstream("one", bound.url, protocol_version=upstream_era)]) as proxy,
        open_mcp_client(proxy.http_url, protocol_version=downstream) as client,
    ):
        upstream_client = proxy.upstreams["one"].client
        assert upstream_client is not None
        assert upstream_client.protocol_version == upstream_era
        with trio.move_on_after(0.5):
            await client.call_tool("one__wait", {})
        with trio.fail_after(5):
            await seen.was_cancelled.wait()
        await trio.sleep(0.2)  # room for a duplicate, were there one
        assert seen.started == ["wait"]
        assert seen.cancelled == ["wait"]
        # In the stateless era over HTTP the closed stream is the cancellation; otherwise one
        # notifications/cancelled each way.
        expected_notices = 0 if upstream_era == "2026-07-28" else 1
        assert upstream_client.cancel_notifications_sent == expected_notices
        assert client.cancel_notifications_sent == (0 if downstream == "2026-07-28" else 1)
        # The session still works afterwards.
        assert (await client.call_tool("one__echo", {"text": "ok"})).text_content == "one:echo:ok"


@pytest.mark.parametrize("upstream_era", ERAS)
async def test_cancellation_over_a_message_channel_upstream(upstream_era: str) -> None:
    one, seen = build_upstream("one")
    async with (
        proxy_running([InProcessUpstream("one", one, protocol_version=upstream_era)]) as proxy,
        open_mcp_client(proxy.http_url, protocol_version="2025-11-25") as client,
    ):
        with trio.move_on_after(0.5):
            await client.call_tool("one__wait", {})
        with trio.fail_after(5):
            await seen.was_cancelled.wait()
        upstream_client = proxy.upstreams["one"].client
        assert upstream_client is not None
        assert upstream_client.cancel_notifications_sent == 1
        assert seen.cancelled == ["wait"]


async def test_list_changed_upstream_refreshes_and_notifies_downstream() -> None:
    one, _ = build_upstream("one")
    notes: list[str] = []
    changed = trio.Event()

    async def on_notification(note: Notification) -> None:
        notes.append(note.method)
        if note.method == "notifications/tools/list_changed":
            changed.set()

    async with (
        http_served(one) as (bound, _),
        proxy_running([HttpUpstream("one", bound.url, protocol_version="2025-11-25")]) as proxy,
        open_mcp_client(
            proxy.http_url, protocol_version="2025-11-25", on_notification=on_notification
        ) as client,
    ):
        assert "one__late" not in [tool.name for tool in proxy.server.tools]
        await trio.sleep(0.2)  # the downstream GET stream is open

        @one.tool("late")
        async def late(arguments: dict[str, Any], ctx: Any) -> str:
            return "late"

        await one.notify_list_changed("tools")
        with trio.fail_after(5):
            await changed.wait()
        assert "one__late" in [tool.name for tool in proxy.server.tools]
        assert "one__late" in [tool.name for tool in await client.list_tools()]


@pytest.mark.parametrize("downstream", ["2025-11-25"])
@pytest.mark.parametrize("upstream_era", ERAS)
@pytest.mark.parametrize("transport", ["http", "memory"])
async def test_sampling_question_goes_to_the_calling_client(
    downstream: str, upstream_era: str, transport: str
) -> None:
    one, _ = build_upstream("one")
    asked: list[JsonObject] = []

    async def sampling(params: JsonObject) -> JsonObject:
        asked.append(params)
        return {"role": "assistant", "content": {"type": "text", "text": "42"}, "model": "m"}

    async with http_served(one) as (bound, _):
        spec: Any = (
            HttpUpstream("one", bound.url, protocol_version=upstream_era)
            if transport == "http"
            else InProcessUpstream("one", one, protocol_version=upstream_era)
        )
        async with (
            proxy_running([spec]) as proxy,
            open_mcp_client(
                proxy.http_url, protocol_version=downstream, sampling=sampling
            ) as client,
        ):
            result = await client.call_tool("one__sample", {"text": "meaning?"})
            assert result.text_content == "one heard 42", result
            assert len(asked) == 1
            assert asked[0]["messages"][0]["content"]["text"] == "meaning?"


async def test_logs_of_a_call_reach_its_caller() -> None:
    one, _ = build_upstream("one")
    logs: list[Any] = []

    async def on_notification(note: Notification) -> None:
        if note.method == "notifications/message":
            logs.append((note.params or {}).get("data"))

    async with (
        http_served(one) as (bound, _),
        proxy_running([HttpUpstream("one", bound.url)]) as proxy,
        open_mcp_client(
            proxy.http_url, protocol_version="2025-11-25", on_notification=on_notification
        ) as client,
    ):
        await client.call_tool("one__progress", {"text": "x"})
        assert logs == ["one logged x"]


async def test_forgotten_upstream_session_is_renewed_and_retried_once() -> None:
    one, seen = build_upstream("one")
    async with (
        http_served(one) as (bound, app),
        proxy_running([HttpUpstream("one", bound.url, protocol_version="2025-11-25")]) as proxy,
        open_mcp_client(proxy.http_url) as client,
    ):
        first = proxy.upstreams["one"].client
        assert app.session_count == 1
        app.close()  # the upstream forgets every session, as after a restart behind a balancer
        result = await client.call_tool("one__echo", {"text": "again"})
        assert result.text_content == "one:echo:again"
        assert not result.is_error
        assert seen.finished == ["echo"]  # exactly once
        assert proxy.upstreams["one"].client is not first


async def test_unreachable_upstream_is_reported_and_others_still_work() -> None:
    one, _ = build_upstream("one")
    async with http_served(one) as (bound, _):
        url = bound.url
    # Nothing listens there any more.
    upstreams: list[UpstreamSpec] = [HttpUpstream("gone", url), InProcessUpstream("one", one)]
    async with (
        proxy_running(upstreams, call_wait=1.0) as proxy,
        open_mcp_client(proxy.http_url) as client,
    ):
        status = {s.name: s for s in proxy.statuses()}
        assert status["gone"].state is UpstreamState.ERROR
        assert status["gone"].last_error
        assert not status["gone"].connected
        assert status["one"].connected
        assert (await client.call_tool("one__echo", {"text": "x"})).text_content == "one:echo:x"


class _SlowLister(McpServer):
    """Lists its tools only after a long time, once it has answered the first listing."""

    listings: int = 0

    async def handle_request(self, request: Request, ctx: RequestContext) -> JsonObject:
        if request.method == "tools/list":
            self.listings += 1
            if self.listings > 1:
                await trio.sleep(30)
        return await super().handle_request(request, ctx)


async def test_listing_fans_out_with_a_per_upstream_timeout() -> None:
    fast, _ = build_upstream("fast")
    slow = _SlowLister(Implementation("slow", "1"))

    @slow.tool("dawdle")
    async def dawdle(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return "dawdled"

    upstreams: list[UpstreamSpec] = [
        InProcessUpstream("slow", slow),
        InProcessUpstream("fast", fast),
    ]
    async with (
        proxy_running(upstreams, list_timeout=0.5) as proxy,
        open_mcp_client(proxy.http_url) as client,
    ):
        started = trio.current_time()
        names = [tool.name for tool in await client.list_tools()]
        assert trio.current_time() - started < 5
        # The slow upstream keeps its last listing (so its tools still route), and says why.
        assert "fast__echo" in names
        assert "slow__dawdle" in names
        status = {s.name: s for s in proxy.statuses()}["slow"]
        assert status.last_error is not None
        assert "timed out" in status.last_error
        assert (await client.call_tool("slow__dawdle", {})).text_content == "dawdled"
