"""An upstream child process killed and restarted mid-run, behind a running proxy.

While it is down, calls to its tools fail with an error naming it (never an empty success) and
its status says so; once it is back on the same port, calls succeed again without restarting the
proxy. Other upstreams are unaffected throughout.
"""

from __future__ import annotations

import sys

import trio
from child_processes import start_url_printing_child
from proxy_harness import (
    EVERYTHING_SERVER,
    build_upstream,
    proxy_running,
)

from trio_sandbox.mcp import open_mcp_client
from trio_sandbox.proxy import HttpUpstream, InProcessUpstream, UpstreamSpec, UpstreamState


async def test_killed_and_restarted_upstream_is_named_then_picked_up_again() -> None:
    async with trio.open_nursery() as children:
        first_life = trio.CancelScope()

        async def first_child(task_status: trio.TaskStatus[str]) -> None:
            with first_life:
                async with trio.open_nursery() as nursery:
                    _, url = await start_url_printing_child(
                        nursery, [sys.executable, str(EVERYTHING_SERVER), "--port", "0"]
                    )
                    task_status.started(url)
                    await trio.sleep_forever()

        url: str = await children.start(first_child)
        port = url.rsplit(":", 1)[1].split("/", 1)[0]
        local, _ = build_upstream("local")
        upstreams: list[UpstreamSpec] = [
            HttpUpstream("ev", url, protocol_version="2025-11-25"),
            InProcessUpstream("local", local),
        ]
        async with (
            proxy_running(
                upstreams, call_wait=1.0, ping_interval=0.2, reconnect_backoff_max=0.5
            ) as proxy,
            open_mcp_client(proxy.http_url) as client,
        ):
            before = await client.call_tool("ev__test_simple_text", {})
            assert not before.is_error
            assert before.text_content

            first_life.cancel()  # the child's whole process group is stopped
            with trio.fail_after(10):
                # The status is polled as a health monitor would poll it.
                while proxy.upstreams["ev"].state is UpstreamState.CONNECTED:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            down = await client.call_tool("ev__test_simple_text", {})
            assert down.is_error
            assert "'ev'" in down.text_content
            status = {s.name: s for s in proxy.statuses()}["ev"]
            assert not status.connected
            assert status.last_error
            assert status.to_json()["state"] in ("error", "connecting")
            local_result = await client.call_tool("local__echo", {"text": "still"})
            assert local_result.text_content == "local:echo:still"

            # Back on the same port: the proxy reconnects by itself.
            async with trio.open_nursery() as nursery:
                await start_url_printing_child(
                    nursery, [sys.executable, str(EVERYTHING_SERVER), "--port", port]
                )
                with trio.fail_after(20):
                    while True:
                        again = await client.call_tool("ev__test_simple_text", {})
                        if not again.is_error:
                            break
                        assert "'ev'" in again.text_content
                        await trio.sleep(0.1)
                assert again.text_content == before.text_content
                assert proxy.upstreams["ev"].status.connected
                nursery.cancel_scope.cancel()
        children.cancel_scope.cancel()
