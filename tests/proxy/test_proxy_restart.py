"""An upstream child process killed and restarted mid-run, behind a running proxy.

While it is down, calls to its tools fail with an error naming it (never an empty success) and
its status says so; once it is back on the same port, calls succeed again without restarting the
proxy. Other upstreams are unaffected throughout.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import pytest
import trio

from tests.conformance.child_processes import start_url_printing_child
from tests.proxy.proxy_harness import (
    EVERYTHING_SERVER,
    build_upstream,
    proxy_running,
)
from trio_sandbox.mcp import open_mcp_client
from trio_sandbox.proxy import (
    HttpUpstream,
    InProcessUpstream,
    StdioUpstream,
    UpstreamSpec,
    UpstreamState,
)

STDIO_CHILD = Path(__file__).with_name("stdio_upstream_child.py")


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


async def test_a_stdio_upstream_killed_is_logged_down_then_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL of a stdio upstream: one line when it dies, one when it is back, the calls in
    between fail naming it, and the proxy starts a new child by itself."""
    caplog.set_level(logging.INFO, logger="trio_sandbox.proxy")
    pid_file = tmp_path / "pids"
    spec = StdioUpstream("kid", sys.executable, [str(STDIO_CHILD), str(pid_file)])
    async with (
        proxy_running([spec], call_wait=1.0, ping_interval=0.2, reconnect_backoff_max=0.5) as proxy,
        open_mcp_client(proxy.http_url) as client,
    ):
        first = await client.call_tool("kid__whoami", {})
        first_pid, grandchild = (int(pid) for pid in pid_file.read_text().split())
        assert first.text_content == f"pid {first_pid}"
        grandchild_exit = os.pidfd_open(grandchild)
        os.kill(first_pid, signal.SIGKILL)
        with trio.fail_after(20):
            while True:
                again = await client.call_tool("kid__whoami", {})
                if not again.is_error and again.text_content != first.text_content:
                    break
                if again.is_error:
                    assert "'kid'" in again.text_content
                await trio.sleep(0.05)
            # The dead child's process group is SIGKILLed even though its leader is gone.
            await trio.lowlevel.wait_readable(grandchild_exit)
        os.close(grandchild_exit)
    messages = [record.getMessage() for record in caplog.records]
    downs = [m for m in messages if m.startswith("upstream 'kid' is down")]
    backs = [m for m in messages if m == "upstream 'kid' is back"]
    assert len(downs) == 1, messages
    assert len(backs) == 1, messages
    assert not [record for record in caplog.records if record.exc_info]
