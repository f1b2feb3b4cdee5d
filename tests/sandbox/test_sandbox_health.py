"""Health, threshold, backoff and respawn logic under a virtual clock, with an in-process fake
sandbox (sandbox_fakes.FakeLauncher) behind the real supervisor, monitor and proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from tests.sandbox.sandbox_fakes import FakeLauncher, all_tasks
from trio_sandbox.proxy import HttpFace
from trio_sandbox.sandbox import (
    Sandbox,
    SandboxConfig,
    SandboxFailed,
    SandboxHealth,
    SandboxRestarted,
    SandboxStartError,
    SandboxUnavailable,
    open_sandbox,
)

# Cold respawns (no warm spares): the pool's own tests are in test_sandbox_spares.py.
CONFIG = SandboxConfig(
    warm_spares=0,
    health_interval=30.0,
    health_timeout=10.0,
    respawn_threshold=3,
    max_respawn_attempts=5,
    respawn_backoff=0.5,
    respawn_backoff_max=30.0,
    respawn_wait=30.0,
)


@asynccontextmanager
async def fake_sandbox(
    launcher: FakeLauncher, config: SandboxConfig = CONFIG
) -> AsyncIterator[Sandbox]:
    # A plain-HTTP face on loopback: no certificate chain to make for every test.
    async with open_sandbox(config, face=HttpFace(plain=True), launcher=launcher) as sandbox:
        yield sandbox


async def test_start_publishes_a_healthy_first_generation(autojump_clock: Any) -> None:
    launcher = FakeLauncher(start_delay=2.0)
    start = trio.current_time()
    async with fake_sandbox(launcher) as sandbox:
        assert trio.current_time() - start == pytest.approx(2.0)
        assert [tool.name for tool in sandbox.tools] == ["block", "echo"]
        health = sandbox.health
        assert health.healthy
        assert health.generation == 1
        assert health.consecutive_ok == 1
        assert health.last_ok == pytest.approx(start + 2.0)
        result = await sandbox.call_tool("echo", {"text": "hi"})
        assert result.text_content == "hi from generation 1"
    assert launcher.current.stopped.is_set()


async def test_tools_are_the_same_objects_until_the_listing_changes(autojump_clock: Any) -> None:
    launcher = FakeLauncher()
    async with fake_sandbox(launcher) as sandbox:
        tools = sandbox.tools
        assert sandbox.tools is tools  # a read builds nothing
        await sandbox.list_tools()  # a listing that finds no change keeps them
        assert sandbox.tools is tools

        @launcher.current.server.tool("late", input_schema={"type": "object", "properties": {}})
        async def late(arguments: dict[str, Any], ctx: Any) -> str:
            return ""

        await sandbox.list_tools()
        assert [tool.name for tool in sandbox.tools] == ["block", "echo", "late"]


async def test_probes_every_interval_and_count_successes(autojump_clock: Any) -> None:
    launcher = FakeLauncher()
    async with fake_sandbox(launcher) as sandbox:
        up = trio.current_time()
        first = await sandbox.wait_health_change()
        assert trio.current_time() - up == pytest.approx(30.0)
        assert first.consecutive_ok == 2
        assert first.last_ok == pytest.approx(up + 30.0)
        second = await sandbox.wait_health_change()
        assert trio.current_time() - up == pytest.approx(60.0)
        assert second.consecutive_ok == 3
        assert second.consecutive_failures == 0


async def test_a_hung_sandbox_is_respawned_after_threshold_failed_probes(
    autojump_clock: Any,
) -> None:
    launcher = FakeLauncher()
    async with fake_sandbox(launcher) as sandbox:
        up = trio.current_time()
        launcher.current.hung = True
        seen: list[tuple[float, SandboxHealth]] = []
        while sandbox.health.generation < 2:
            health = await sandbox.wait_health_change()
            seen.append((trio.current_time() - up, health))
        # Probes at 30, 70, 110 s, each failing after its 10 s timeout; the third one triggers
        # the respawn at once (the first respawn of a series has no backoff).
        failures = [(round(t, 6), h.consecutive_failures) for t, h in seen if not h.healthy]
        assert failures[:3] == [(40.0, 1), (80.0, 2), (120.0, 3)]
        assert launcher.generations[0].stopped.is_set()
        assert launcher.generations[1].started_at - up == pytest.approx(120.0)
        health = sandbox.health
        assert health.healthy
        assert health.generation == 2
        assert health.total_respawn_attempts == 1
        assert health.consecutive_failures == 0
        assert "no answer to ping within 10 s" in (health.last_error or "")
        result = await sandbox.call_tool("echo", {"text": "x"})
        assert result.text_content == "x from generation 2"


async def test_fewer_failures_than_threshold_do_not_respawn(autojump_clock: Any) -> None:
    launcher = FakeLauncher()
    async with fake_sandbox(launcher) as sandbox:
        launcher.current.hung = True
        while sandbox.health.consecutive_failures < 2:
            await sandbox.wait_health_change()
        launcher.current.hung = False
        while not sandbox.health.healthy:
            await sandbox.wait_health_change()
        assert sandbox.health.consecutive_failures == 0
        assert len(launcher.generations) == 1


async def test_a_dying_warden_respawns_at_once_without_probes(autojump_clock: Any) -> None:
    launcher = FakeLauncher(start_delay=1.0)
    async with fake_sandbox(launcher) as sandbox:
        await trio.sleep(5.0)
        died_at = trio.current_time()
        launcher.current.die()
        second = await launcher.wait_launches(2)
        assert second.started_at == pytest.approx(died_at)
        while sandbox.health.generation < 2:
            await sandbox.wait_health_change()
        assert trio.current_time() - died_at == pytest.approx(1.0)  # just its start time
        assert sandbox.health.total_respawn_attempts == 1


async def crash_loop(launcher: FakeLauncher, config: SandboxConfig, died: list[float]) -> None:
    """Kill the sandbox, and make every later start fail."""
    async with fake_sandbox(launcher, config):
        died.append(trio.current_time())
        launcher.fail_starts = 1000
        launcher.current.die()
        await trio.sleep_forever()


async def test_backoff_doubles_then_gives_up_with_sandbox_failed(autojump_clock: Any) -> None:
    launcher = FakeLauncher()
    died: list[float] = []
    with pytest.raises(SandboxFailed) as caught:  # itself, not an ExceptionGroup around it
        await crash_loop(launcher, CONFIG, died)
    died_at = died[0]
    assert "failed 5 respawn attempts in a row" in str(caught.value)
    assert "fake: no CA block" in str(caught.value)
    starts = [round(g.started_at - died_at, 6) for g in launcher.generations[1:]]
    assert starts == [0.0, 0.5, 1.5, 3.5, 7.5]
    assert all(g.stopped.is_set() for g in launcher.generations)


async def test_backoff_is_capped(autojump_clock: Any) -> None:
    launcher = FakeLauncher()
    config = SandboxConfig(
        warm_spares=0,
        respawn_backoff=1.0,
        respawn_backoff_max=3.0,
        max_respawn_attempts=6,
        health_interval=1e6,
    )
    died: list[float] = []
    with pytest.raises(SandboxFailed):
        await crash_loop(launcher, config, died)
    died_at = died[0]
    starts = [round(g.started_at - died_at, 6) for g in launcher.generations[1:]]
    assert starts == [0.0, 1.0, 3.0, 6.0, 9.0, 12.0]


async def test_a_healthy_period_starts_a_new_series_of_attempts(autojump_clock: Any) -> None:
    launcher = FakeLauncher()
    async with fake_sandbox(launcher) as sandbox:
        launcher.fail_starts = 2
        launcher.current.die()
        while sandbox.health.generation < 2:
            await sandbox.wait_health_change()
        # The second sandbox came up on the third attempt (after waits of 0, 0.5 and 1 s); it has
        # not passed a probe yet, so a death now continues the series: the next wait is 2 s.
        launcher.current.die()
        died_at = trio.current_time()
        await launcher.wait_launches(5)
        assert launcher.generations[4].started_at - died_at == pytest.approx(2.0)
        while sandbox.health.generation < 3:
            await sandbox.wait_health_change()
        # One good probe later the series restarts: the next death respawns at once.
        while sandbox.health.consecutive_ok < 2:
            await sandbox.wait_health_change()
        died_at = trio.current_time()
        launcher.current.die()
        await launcher.wait_launches(6)
        assert launcher.generations[5].started_at == pytest.approx(died_at)


async def test_restart_replaces_the_sandbox_and_returns_once_it_serves(
    autojump_clock: Any,
) -> None:
    launcher = FakeLauncher(start_delay=3.0)
    async with fake_sandbox(launcher) as sandbox:
        before = trio.current_time()
        await sandbox.restart()
        assert trio.current_time() - before == pytest.approx(3.0)
        assert launcher.generations[0].stopped.is_set()
        assert sandbox.health.generation == 2
        assert sandbox.health.healthy
        result = await sandbox.call_tool("echo", {"text": "again"})
        assert result.text_content == "again from generation 2"


async def test_a_call_arriving_while_respawning_waits_and_runs_on_the_new_sandbox(
    autojump_clock: Any,
) -> None:
    launcher = FakeLauncher(start_delay=4.0)
    async with fake_sandbox(launcher) as sandbox:
        launcher.current.die()
        await launcher.wait_launches(2)
        asked = trio.current_time()
        result = await sandbox.call_tool("echo", {"text": "waited"})
        assert trio.current_time() - asked == pytest.approx(4.0)
        assert result.text_content == "waited from generation 2"
        assert launcher.generations[0].runs == {}
        assert launcher.generations[1].runs == {"echo": 1}


async def test_a_call_waits_at_most_respawn_wait(autojump_clock: Any) -> None:
    launcher = FakeLauncher(start_delay=100.0)
    async with fake_sandbox(launcher) as sandbox:
        launcher.current.die()
        await launcher.wait_launches(2)
        asked = trio.current_time()
        with pytest.raises(SandboxUnavailable, match="not back within 30 s"):
            await sandbox.call_tool("echo", {"text": "late"})
        assert trio.current_time() - asked == pytest.approx(30.0)
        assert all(not g.runs for g in launcher.generations)


async def test_a_call_in_flight_on_a_dying_sandbox_fails_as_restarted_and_runs_once(
    autojump_clock: Any,
) -> None:
    launcher = FakeLauncher()
    async with fake_sandbox(launcher) as sandbox:
        first = launcher.current
        async with trio.open_nursery() as nursery:

            async def kill_when_entered() -> None:
                await first.entered_block.wait()
                first.die()

            nursery.start_soon(kill_when_entered)
            with pytest.raises(SandboxRestarted, match="restarted while this call was in flight"):
                await sandbox.call_tool("block")
        while sandbox.health.generation < 2:
            await sandbox.wait_health_change()
        # Never retried behind the caller's back: it ran once, on the first sandbox only.
        assert first.runs == {"block": 1}
        assert launcher.current.runs == {}


async def test_the_proxy_url_stays_the_same_across_respawns(autojump_clock: Any) -> None:
    launcher = FakeLauncher()
    async with fake_sandbox(launcher) as sandbox:
        url = sandbox.proxy_url
        await sandbox.restart()
        launcher.current.die()
        while sandbox.health.generation < 3:
            await sandbox.wait_health_change()
        assert sandbox.proxy_url == url


async def test_a_first_start_failure_raises_the_start_error_itself(autojump_clock: Any) -> None:
    launcher = FakeLauncher(fail_starts=1)
    with pytest.raises(SandboxStartError) as caught:
        async with fake_sandbox(launcher):
            pytest.fail("must not get here")  # pragma: no cover
    assert caught.value.step == "ca"
    assert caught.value.exit_status == 3
    assert caught.value.stderr_tail == "fake warden stderr"
    assert len(launcher.generations) == 1
    assert launcher.current.stopped.is_set()


async def test_cancelling_during_startup_stops_the_generation(autojump_clock: Any) -> None:
    launcher = FakeLauncher(start_delay=10.0)
    with trio.move_on_after(5.0) as scope:
        async with fake_sandbox(launcher):
            pytest.fail("must not get here")  # pragma: no cover
    assert scope.cancelled_caught
    assert launcher.current.stopped.is_set()


async def test_an_error_in_the_body_comes_out_as_itself(autojump_clock: Any) -> None:
    launcher = FakeLauncher()
    with pytest.raises(KeyError):
        async with fake_sandbox(launcher):
            raise KeyError("mine")
    assert launcher.current.stopped.is_set()


async def test_no_tasks_remain_after_exit(autojump_clock: Any) -> None:
    launcher = FakeLauncher()
    before = all_tasks()
    async with fake_sandbox(launcher) as sandbox:
        launcher.current.die()
        while sandbox.health.generation < 2:
            await sandbox.wait_health_change()
        assert len(all_tasks()) > len(before) + 3
    assert all_tasks() == before
