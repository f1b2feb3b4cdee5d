"""The proxy in front of two foreign servers at once: the npm reference server
``@modelcontextprotocol/server-everything`` (a stdio child speaking the handshake era) and an
official-SDK server on its own HTTP stack (a child process)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import trio

from tests.conformance.child_processes import start_url_printing_child
from tests.proxy.proxy_harness import (
    NODE_BIN,
    process_exists,
    proxy_running,
)
from tests.support.sandbox_users import REPO
from trio_sandbox.mcp import HANDSHAKE_VERSIONS, open_mcp_client
from trio_sandbox.proxy import HttpUpstream, StdioUpstream, UpstreamSpec

EVERYTHING_JS = (
    NODE_BIN.parent / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_npm_everything_and_an_sdk_server_behind_one_proxy() -> None:
    assert EVERYTHING_JS.exists(), f"{EVERYTHING_JS} is missing: run .ci/install"
    async with trio.open_nursery() as children:
        _, sdk_url = await start_url_printing_child(
            children,
            [sys.executable, "-m", "tests.proxy.sdk_upstream_child", str(free_port())],
            cwd=REPO,
        )
        upstreams: list[UpstreamSpec] = [
            StdioUpstream("ev", str(NODE_BIN / "node"), [str(EVERYTHING_JS), "stdio"]),
            HttpUpstream("sdk", sdk_url),
        ]
        async with proxy_running(upstreams, reconnect_backoff_max=0.3) as proxy:
            with trio.fail_after(20):
                while not all(status.connected for status in proxy.statuses()):  # noqa: ASYNC110
                    await trio.sleep(0.05)
            ev_client = proxy.upstreams["ev"].client
            assert ev_client is not None
            assert ev_client.protocol_version in HANDSHAKE_VERSIONS
            assert ev_client.server_info is not None
            assert "everything" in ev_client.server_info.name
            node_pids = _everything_pids()
            assert node_pids
            async with open_mcp_client(proxy.http_url) as client:
                names = [tool.name for tool in await client.list_tools()]
                assert names == sorted(names)
                assert {"ev__echo", "ev__get-sum", "sdk__add", "sdk__echo", "sdk__fail"} <= set(
                    names
                )
                echoed = await client.call_tool("ev__echo", {"message": "hi"})
                assert echoed.text_content == "Echo: hi"
                summed = await client.call_tool("ev__get-sum", {"a": 2, "b": 40})
                assert "42" in summed.text_content
                added = await client.call_tool("sdk__add", {"a": 2, "b": 3})
                assert added.text_content == "5"
                heard: list[str | None] = []

                async def progress(done: float, total: float | None, message: str | None) -> None:
                    heard.append(message)

                sdk_echo = await client.call_tool("sdk__echo", {"text": "x"}, progress=progress)
                assert sdk_echo.text_content == "x"
                assert heard == ["halfway", "done"]
                failed = await client.call_tool("sdk__fail", {})
                assert failed.is_error
                assert "deliberate failure" in failed.text_content
                prompts = [prompt.name for prompt in await client.list_prompts()]
                assert any(name.startswith("ev__") for name in prompts)
        children.cancel_scope.cancel()
    assert not [pid for pid in node_pids if process_exists(pid)]


def _everything_pids() -> set[int]:
    """The npm server's process ids, found through /proc (the proxy does not expose them)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(EVERYTHING_JS).encode() in cmdline:
            found.add(int(entry.name))
    return found
