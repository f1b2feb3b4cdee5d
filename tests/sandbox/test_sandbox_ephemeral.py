"""Ephemeral mode: a sandbox per downstream MCP session, made on first use and stopped when the
session ends; no health monitor. Real HTTP sessions to the proxy (plain HTTP on loopback), fake
in-process sandboxes; real time, bounded."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel

from tests.sandbox.sandbox_fakes import FakeLauncher
from trio_sandbox.mcp import open_mcp_client
from trio_sandbox.proxy import HttpFace
from trio_sandbox.sandbox import SandboxConfig, SandboxMode, open_sandbox

# Sessions exist in the handshake era; a stateless-era request has none, and on a face that
# authenticates no one (plain HTTP here) it uses the main sandbox (see test_sandbox_clients.py).
HANDSHAKE = "2025-11-25"
# Started on demand (no warm spares), so that generations count in order of sessions.
EPHEMERAL = SandboxConfig(
    mode=SandboxMode.EPHEMERAL, warm_spares=0, health_interval=0.05, health_timeout=0.05
)


async def test_each_session_gets_its_own_sandbox_until_it_ends() -> None:
    launcher = FakeLauncher()
    with trio.fail_after(20):
        async with open_sandbox(EPHEMERAL, face=HttpFace(plain=True), launcher=launcher) as sb:
            assert len(launcher.generations) == 1  # the open_sandbox call's own sandbox
            async with open_mcp_client(sb.proxy_url, protocol_version=HANDSHAKE) as alice:
                listed = await alice.list_tools()
                assert {tool.name for tool in listed} == {"echo", "block"}
                assert len(launcher.generations) == 1  # listing needs no sandbox of its own
                async with open_mcp_client(sb.proxy_url, protocol_version=HANDSHAKE) as bob:
                    a = await alice.call_tool("echo", {"text": "a"})
                    b = await bob.call_tool("echo", {"text": "b"})
                    a2 = await alice.call_tool("echo", {"text": "a2"})
                    assert {a.text_content, b.text_content} == {
                        "a from generation 2",
                        "b from generation 3",
                    } or {a.text_content, b.text_content} == {
                        "a from generation 3",
                        "b from generation 2",
                    }
                    assert a2.text_content.split()[-1] == a.text_content.split()[-1]
                    assert sb.session_sandboxes == 2
                bobs = next(g for g in launcher.generations[1:] if g.runs.get("echo") == 1)
                await bobs.stopped.wait()  # DELETE of bob's session stops his sandbox
                assert sb.session_sandboxes == 1
                # The embedder's own calls use the open_sandbox call's sandbox.
                mine = await sb.call_tool("echo", {"text": "me"})
                assert mine.text_content == "me from generation 1"
            for generation in launcher.generations[1:]:
                await generation.stopped.wait()
            assert sb.session_sandboxes == 0
            # No monitor in ephemeral mode: a hung sandbox is not probed, let alone respawned.
            launcher.generations[0].hung = True
            await trio.sleep(0.3)
            assert sb.health.consecutive_failures == 0
            assert sb.health.generation == 1
    assert all(g.stopped.is_set() for g in launcher.generations)
    assert len(launcher.generations) == 3


async def test_stateless_requests_use_the_open_sandbox_calls_sandbox() -> None:
    launcher = FakeLauncher()
    with trio.fail_after(20):
        async with open_sandbox(EPHEMERAL, face=HttpFace(plain=True), launcher=launcher) as sb:
            async with open_mcp_client(sb.proxy_url, protocol_version="2026-07-28") as client:
                result = await client.call_tool("echo", {"text": "s"})
                assert result.text_content == "s from generation 1"
            assert len(launcher.generations) == 1


async def test_a_session_sandbox_that_cannot_start_fails_its_calls_at_once() -> None:
    launcher = FakeLauncher()
    with trio.fail_after(20):
        async with open_sandbox(EPHEMERAL, face=HttpFace(plain=True), launcher=launcher) as sb:
            launcher.fail_starts = 1
            async with open_mcp_client(sb.proxy_url, protocol_version=HANDSHAKE) as client:
                result = await client.call_tool("echo", {"text": "x"})
                assert result.is_error
                assert "the session's sandbox could not start" in result.text_content
                assert "fake: no CA block" in result.text_content


@pytest.mark.parametrize("idle", [0.2])
async def test_an_idle_session_sandbox_is_stopped(idle: float) -> None:
    launcher = FakeLauncher()
    config = SandboxConfig(mode=SandboxMode.EPHEMERAL, warm_spares=0, ephemeral_idle_timeout=idle)
    with trio.fail_after(20):
        async with (
            open_sandbox(config, face=HttpFace(plain=True), launcher=launcher) as sb,
            open_mcp_client(sb.proxy_url, protocol_version=HANDSHAKE) as client,
        ):
            await client.call_tool("echo", {"text": "x"})
            session_sandbox = launcher.generations[1]
            await session_sandbox.stopped.wait()
            assert sb.session_sandboxes == 0
            # The next call of the same session makes a fresh one.
            again = await client.call_tool("echo", {"text": "y"})
            assert again.text_content == "y from generation 3"
