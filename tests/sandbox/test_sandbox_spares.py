"""Warm spares: sandboxes started ahead, handed out whole to one taker, never shared or reused.

The pool's logic (hand-out, swap on respawn, a spare dying before hand-out, backoff of failing
starts, the cap, cancellation) runs under a virtual clock with the in-process fake sandbox
(sandbox_fakes.FakeLauncher); what only real processes show (a respawn is a swap of real
sandboxes, ephemeral sessions never share files, Ctrl-C and SIGKILL of the host with spares
starting or running leave nothing) runs with real bubblewrap, as root and as an ordinary user.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.cli.cli_harness import (
    CHILD_LIMIT,
    RunningCli,
    descendants,
    free_port,
    listening_on,
    start_cli,
    wait_all_gone,
)
from tests.cli.test_cli_lifeline import _pids_with, mounts, published_ports, wait_exit
from tests.sandbox.sandbox_fakes import FakeLauncher, all_tasks
from tests.support.sandbox_users import SandboxUser
from trio_sandbox.cli._errors import UsageError
from trio_sandbox.cli._main import build_parser
from trio_sandbox.cli._options import sandbox_config
from trio_sandbox.mcp import open_mcp_client
from trio_sandbox.proxy import HttpFace
from trio_sandbox.sandbox import (
    Sandbox,
    SandboxConfig,
    SandboxMode,
    SandboxRestarted,
    open_sandbox,
)
from trio_sandbox.sandbox._spares import REPLACE_AFTER

CONFIG = SandboxConfig(
    warm_spares=1,
    health_interval=30.0,
    respawn_backoff=0.5,
    respawn_backoff_max=30.0,
    respawn_wait=30.0,
)
HANDSHAKE = "2025-11-25"
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


@asynccontextmanager
async def fake_sandbox(
    launcher: FakeLauncher, config: SandboxConfig = CONFIG
) -> AsyncIterator[Sandbox]:
    async with open_sandbox(config, face=HttpFace(plain=True), launcher=launcher) as sandbox:
        yield sandbox


def spares(sandbox: Sandbox) -> dict[str, Any]:
    status = sandbox.status()["spares"]
    assert isinstance(status, dict)
    return status


async def until(condition: Callable[[], bool]) -> None:
    """Under the virtual clock: until ``condition`` holds (each look costs no real time)."""
    while not condition():  # noqa: ASYNC110 - the pool's state has no event of its own to test
        await trio.sleep(0.001)


def serving(text: str) -> int:
    """The fake generation that answered an echo."""
    return int(text.split()[-1])


# --- the pool's logic, under a virtual clock -----------------------------------------------------


async def test_a_spare_is_ready_and_a_respawn_swaps_it_in(autojump_clock: Any) -> None:
    launcher = FakeLauncher(start_delay=2.0)
    async with fake_sandbox(launcher) as sandbox:
        # The first sandbox started alone (one start at a time), then the spare behind it, once
        # the first one had the CPU for its first calls.
        assert launcher.generations[0].up_at == pytest.approx(2.0)
        await sandbox.wait_spares_ready(1)
        assert launcher.generations[1].started_at == pytest.approx(2.0 + REPLACE_AFTER)
        assert spares(sandbox) | {"next_start_in": None} == {
            "wanted": 1,
            "ready": 1,
            "starting": 0,
            "in_use": 1,
            "failures_in_a_row": 0,
            "last_error": None,
            "next_start_in": None,
        }
        first = await sandbox.call_tool("echo", {"text": "a"})
        assert serving(first.text_content) == 1
        killed_at = trio.current_time()
        launcher.generations[0].die()
        while sandbox.health.generation < 2:
            await sandbox.wait_health_change()
        # A swap: no start (2 s here) between the death and the next sandbox serving.
        assert trio.current_time() - killed_at < 0.1
        after = await sandbox.call_tool("echo", {"text": "b"})
        assert serving(after.text_content) == 2
        assert launcher.generations[1].runs == {"echo": 1}  # the spare served nobody before
        await launcher.generations[0].stopped.wait()  # the used one is torn down, not kept
        await sandbox.wait_spares_ready(1)  # and the pool is whole again
        assert len(launcher.generations) == 3
        # A restart asked for is a swap too.
        await sandbox.restart()
        again = await sandbox.call_tool("echo", {"text": "c"})
        assert serving(again.text_content) == 3
    assert all(g.stopped.is_set() for g in launcher.generations)


async def test_calls_in_flight_fail_typed_and_the_next_one_runs_on_the_spare(
    autojump_clock: Any,
) -> None:
    launcher = FakeLauncher(start_delay=1.0)
    async with fake_sandbox(launcher) as sandbox:
        await sandbox.wait_spares_ready(1)
        outcome: list[object] = []

        async def blocked() -> None:
            try:
                outcome.append(await sandbox.call_tool("block"))
            except SandboxRestarted as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked)
            await launcher.generations[0].entered_block.wait()
            launcher.generations[0].die()
        assert len(outcome) == 1
        assert isinstance(outcome[0], SandboxRestarted)
        assert launcher.generations[1].runs == {}  # never retried on the spare
        result = await sandbox.call_tool("echo", {"text": "next"})
        assert serving(result.text_content) == 2


async def test_a_spare_that_dies_before_hand_out_is_replaced_never_handed_out(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    launcher = FakeLauncher(start_delay=1.0)
    async with fake_sandbox(launcher) as sandbox:
        await sandbox.wait_spares_ready(1)
        launcher.generations[1].die()  # the spare, before anyone took it
        await launcher.generations[1].stopped.wait()
        assert spares(sandbox)["ready"] == 0  # a dead spare is not counted as ready
        await sandbox.wait_spares_ready(1)
        assert len(launcher.generations) == 3
        launcher.generations[0].die()
        while sandbox.health.generation < 2:
            await sandbox.wait_health_change()
        result = await sandbox.call_tool("echo", {"text": "x"})
        assert serving(result.text_content) == 3  # not the dead one
        assert launcher.generations[1].runs == {}
    assert any("ended before it was handed out" in r.getMessage() for r in caplog.records)


async def test_failing_starts_back_off_and_status_says_why(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    launcher = FakeLauncher(start_delay=1.0)
    async with fake_sandbox(launcher) as sandbox:
        # The spare's start is under way (1 s); it and the next three fail.
        await launcher.wait_launches(2)
        launcher.fail_starts = 4
        await until(lambda: spares(sandbox)["failures_in_a_row"] == 1)
        status = spares(sandbox)
        assert status["last_error"] == "fake: no CA block"
        assert status["next_start_in"] == pytest.approx(0.5, abs=0.01)
        await sandbox.wait_spares_ready(1)
        assert len(launcher.generations) == 6
        # Each start began 1 s (its own start) plus the backoff after the one before.
        began = [g.started_at for g in launcher.generations[1:]]
        gaps = [later - earlier for earlier, later in itertools.pairwise(began)]
        assert gaps == pytest.approx([1.5, 2.0, 3.0, 5.0])
        assert spares(sandbox)["failures_in_a_row"] == 0
        # The sandbox that serves was never touched by it.
        assert sandbox.health.generation == 1
        result = await sandbox.call_tool("echo", {"text": "ok"})
        assert serving(result.text_content) == 1
    lines = [r.getMessage() for r in caplog.records if "could not start" in r.getMessage()]
    assert len(lines) == 4
    assert "4 failed starts in a row, next in 4 s" in lines[-1]


async def test_a_respawn_waits_out_the_backoff_then_succeeds(autojump_clock: Any) -> None:
    launcher = FakeLauncher(start_delay=1.0)
    config = attrs.evolve(CONFIG, respawn_wait=60.0)
    async with fake_sandbox(launcher, config) as sandbox:
        await launcher.wait_launches(2)
        launcher.fail_starts = 2  # the spare, and the next start
        await until(lambda: spares(sandbox)["failures_in_a_row"] == 1)
        launcher.generations[0].die()
        # Once the death is seen (a call sent before that is one in flight, lost with it),
        # a call waits (no session) while starts back off, then runs on the first good one.
        while not sandbox.health.respawning:
            await sandbox.wait_health_change()
        result = await sandbox.call_tool("echo", {"text": "late"})
        assert serving(result.text_content) == 4
        assert sandbox.health.total_respawn_attempts >= 1


async def test_leaving_while_spares_start_leaves_no_task(autojump_clock: Any) -> None:
    before = all_tasks()
    launcher = FakeLauncher(start_delay=5.0)
    config = attrs.evolve(CONFIG, warm_spares=3)
    async with fake_sandbox(launcher, config) as sandbox:
        await trio.sleep(REPLACE_AFTER + 1.0)
        assert spares(sandbox)["starting"] == 1  # one at a time when nobody waits
    assert all(g.stopped.is_set() for g in launcher.generations)
    assert all_tasks() == before


async def test_cancelled_while_the_first_sandbox_and_spares_start(autojump_clock: Any) -> None:
    before = all_tasks()
    launcher = FakeLauncher(start_delay=5.0)
    with trio.move_on_after(2.0):
        async with fake_sandbox(launcher, attrs.evolve(CONFIG, warm_spares=2)):
            pytest.fail("the sandbox cannot be up before its start ends")
    assert launcher.generations
    assert all(g.stopped.is_set() for g in launcher.generations)
    assert all_tasks() == before


async def test_no_spares_when_warm_spares_is_zero(autojump_clock: Any) -> None:
    launcher = FakeLauncher(start_delay=1.0)
    async with fake_sandbox(launcher, attrs.evolve(CONFIG, warm_spares=0)) as sandbox:
        await trio.sleep(10)
        assert len(launcher.generations) == 1
        assert sandbox.status()["spares"] is None
        launcher.generations[0].die()
        while sandbox.health.generation < 2:
            await sandbox.wait_health_change()
        assert len(launcher.generations) == 2  # a cold start


@pytest.mark.parametrize(
    ("config_file", "args", "expected"),
    [
        (None, ["run"], 1),
        (None, ["run", "--warm-spares", "0"], 0),
        (None, ["stdio", "--warm-spares", "3"], 3),
        ("warm_spares = 2\n", ["run"], 2),
        ("warm_spares = 2\n", ["run", "--warm-spares", "4"], 4),
    ],
)
def test_warm_spares_from_the_command_line_and_the_config_file(
    tmp_path: Path, config_file: str | None, args: list[str], expected: int
) -> None:
    if config_file is not None:
        (tmp_path / "c.toml").write_text(config_file)
        args = [*args, "--config", str(tmp_path / "c.toml")]
    config, _ = sandbox_config(build_parser().parse_args(args))
    assert config.warm_spares == expected


@pytest.mark.parametrize(
    ("config_file", "args", "message"),
    [
        (None, ["run", "--warm-spares", "-1"], "warm_spares must be 0 or more, not -1"),
        ('warm_spares = "1"\n', ["run"], "config key 'warm_spares': expected a whole number"),
    ],
)
def test_bad_warm_spares_are_refused_naming_the_setting(
    tmp_path: Path, config_file: str | None, args: list[str], message: str
) -> None:
    if config_file is not None:
        (tmp_path / "c.toml").write_text(config_file)
        args = [*args, "--config", str(tmp_path / "c.toml")]
    with pytest.raises(UsageError, match=message):
        sandbox_config(build_parser().parse_args(args))


def test_one_shot_commands_take_no_warm_spares_option() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["call", "--warm-spares", "1", "echo"])


# --- ephemeral sessions: each from the pool, the cap kept --------------------------------------


EPHEMERAL = attrs.evolve(CONFIG, mode=SandboxMode.EPHEMERAL, max_sandboxes=3, warm_spares=2)


async def test_ephemeral_sessions_take_spares_never_shared_and_within_the_cap(
    autojump_clock: Any,
) -> None:
    launcher = FakeLauncher(start_delay=1.0)
    alive_max = 0

    def alive() -> int:
        return sum(1 for g in launcher.generations if not g.stopped.is_set())

    async def watch_alive() -> None:
        nonlocal alive_max
        while True:
            alive_max = max(alive_max, alive())
            await trio.sleep(0.01)

    async with fake_sandbox(launcher, EPHEMERAL) as sandbox, trio.open_nursery() as watcher:
        watcher.start_soon(watch_alive)
        await sandbox.wait_spares_ready(2)
        served: list[int] = []
        for round_ in range(6):
            took_at = trio.current_time()
            async with open_mcp_client(sandbox.proxy_url, protocol_version=HANDSHAKE) as client:
                result = await client.call_tool("echo", {"text": str(round_)})
                if round_ == 0:
                    # A spare was ready: no start (1 s here) before the first tool result.
                    assert trio.current_time() - took_at < 0.1
                served.append(serving(result.text_content))
                again = await client.call_tool("echo", {"text": "again"})
                assert serving(again.text_content) == served[-1]
        # Every session its own sandbox, none the main one's, none used twice.
        assert len(set(served)) == 6
        assert 1 not in served
        for number in served:
            assert launcher.generations[number - 1].runs == {"echo": 2}
        # Several sessions at once: sessions and spares stay within max_sandboxes (+ the main).
        async with (
            open_mcp_client(sandbox.proxy_url, protocol_version=HANDSHAKE) as a,
            open_mcp_client(sandbox.proxy_url, protocol_version=HANDSHAKE) as b,
            open_mcp_client(sandbox.proxy_url, protocol_version=HANDSHAKE) as c,
        ):
            texts = [(await s.call_tool("echo", {"text": "x"})).text_content for s in (a, b, c)]
            assert len({serving(t) for t in texts}) == 3
            assert spares(sandbox)["ready"] == 0  # no room for a spare beside 3 sessions
            await trio.sleep(5)
            assert spares(sandbox)["ready"] + spares(sandbox)["starting"] == 0
        watcher.cancel_scope.cancel()
    assert alive_max <= EPHEMERAL.max_sandboxes + 1
    assert all(g.stopped.is_set() for g in launcher.generations)


async def test_an_ephemeral_session_whose_start_fails_is_refused_at_once(
    autojump_clock: Any,
) -> None:
    launcher = FakeLauncher(start_delay=1.0)
    config = attrs.evolve(EPHEMERAL, warm_spares=1)
    async with fake_sandbox(launcher, config) as sandbox:
        await launcher.wait_launches(2)
        launcher.fail_starts = 1  # the spare under way
        await until(lambda: spares(sandbox)["failures_in_a_row"] == 1)
        async with open_mcp_client(sandbox.proxy_url, protocol_version=HANDSHAKE) as client:
            asked_at = trio.current_time()
            result = await client.call_tool("echo", {"text": "x"})
            assert trio.current_time() - asked_at < 0.1
            assert result.is_error
            assert "could not start" in result.text_content
            assert "fake: no CA block" in result.text_content


# --- real sandboxes (bubblewrap), root and an ordinary user ------------------------------------

EMBEDDED = r"""
import json, os, signal, sys, time
import trio
from trio_sandbox import SandboxConfig, open_sandbox
from trio_sandbox.cli._errors import UsageError
from trio_sandbox.cli._main import build_parser
from trio_sandbox.cli._options import sandbox_config
from trio_sandbox.mcp import open_mcp_client
from trio_sandbox.proxy import HttpFace

def tool_server_pid(warden):
    # The python below the warden that runs trio_sandbox.tools (as in the kills-under-load test).
    pending, seen = [warden], []
    while pending:
        parent = pending.pop()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                stat = open(f"/proc/{name}/stat").read().rpartition(")")[2].split()
                argv = open(f"/proc/{name}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if int(stat[1]) == parent:
                pending.append(int(name))
                if b"trio_sandbox.tools" in argv[1:4]:
                    return int(name)
    raise AssertionError(f"no tool server below warden {warden}")

async def wait_ready(sandbox):
    with trio.fail_after(60):
        await sandbox.wait_spares_ready(1)

CHECK = "cat /tmp/mark; echo ok"

async def main():
    report = {}
    config = SandboxConfig(warm_spares=1)
    async with open_sandbox(config) as sandbox:
        await wait_ready(sandbox)
        first = sandbox.warden_pid
        await sandbox.call_tool("run_command", {"command": "echo one > /tmp/mark"})
        os.kill(tool_server_pid(first), signal.SIGKILL)
        killed = time.monotonic()
        while True:
            try:
                result = await sandbox.call_tool("run_command", {"command": CHECK})
                break
            except Exception as exc:
                report.setdefault("errors", []).append(type(exc).__name__)
        report["swap_ms"] = (time.monotonic() - killed) * 1000
        report["after_kill"] = result.text_content
        report["new_warden"] = sandbox.warden_pid != first
    ephemeral = SandboxConfig(mode="ephemeral", warm_spares=1)
    async with open_sandbox(ephemeral, face=HttpFace(plain=True)) as sandbox:
        await wait_ready(sandbox)
        seen = []
        for n in range(3):
            async with open_mcp_client(sandbox.proxy_url, protocol_version="2025-11-25") as c:
                listing = await c.call_tool("run_command", {"command": "ls /tmp; echo $$"})
                await c.call_tool("run_command", {"command": f"echo {n} > /tmp/session-{n}"})
                seen.append(listing.text_content)
        report["sessions"] = seen
    print(json.dumps(report))

trio.run(main)
"""


@needs_bwrap
async def test_real_spares_swap_and_ephemeral_sessions_share_nothing(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    report = await sandbox_user.run_json("-c", EMBEDDED, home=workspace, limit=120)
    # The respawn swapped in a spare: a new sandbox (its /tmp has no mark), the call succeeds.
    assert report["new_warden"]
    assert "ok" in report["after_kill"]
    assert "one" not in report["after_kill"].splitlines()
    assert set(report.get("errors", [])) <= {"SandboxRestarted", "SandboxUnavailable"}
    # Each session's sandbox is fresh: no file of an earlier session.
    for text in report["sessions"]:
        assert "session-" not in text, report["sessions"]


async def _start_run_with_spares(
    nursery: trio.Nursery, user: SandboxUser, workspace: Path, spares_wanted: int
) -> tuple[RunningCli, int, Path]:
    port = free_port()
    bundle = workspace / "bundle"
    args = ["run", "--listen", f"127.0.0.1:{port}", "--client-cert-dir", str(bundle)]
    args += ["--volume", f"{workspace}:/work", "--warm-spares", str(spares_wanted)]
    process: trio.Process = await nursery.start(start_cli(args, home=workspace, user=user))
    running = RunningCli(process)
    nursery.start_soon(running.collect)
    await running.wait_for("client certificate bundle")
    return running, port, bundle


def assert_nothing_left(ports: list[int], bundle: Path, mounts_before: str) -> None:
    """Once the processes are gone: the listening ports, the client bundle (key files), the
    mounts."""
    assert [port for port in ports if listening_on(port)] == []
    assert not bundle.exists()
    assert mounts() == mounts_before


def _wardens(pid: int) -> list[int]:
    return sorted(set(published_ports([info.pid for info in descendants(pid)])))


@needs_bwrap
async def test_sigkill_of_run_with_spares_running_leaves_nothing(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    mounts_before = mounts()
    with trio.fail_after(CHILD_LIMIT * 2):
        async with trio.open_nursery() as nursery:
            running, port, bundle = await _start_run_with_spares(
                nursery, sandbox_user, workspace, 2
            )
            pid = running.process.pid
            # The two spares come up after the first sandbox: no event to wait on from here.
            while len(_wardens(pid)) < 3:  # noqa: ASYNC110
                await trio.sleep(0.05)
            below = descendants(pid)
            ports = _wardens(pid)
            assert [info.comm for info in below].count("bwrap") >= 3
            os.kill(pid, signal.SIGKILL)
    assert await wait_all_gone(below, limit=10) == []
    assert_nothing_left([port, *ports], bundle, mounts_before)


@needs_bwrap
async def test_ctrl_c_while_spares_start_leaves_nothing(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    mounts_before = mounts()
    with trio.fail_after(CHILD_LIMIT * 2):
        async with trio.open_nursery() as nursery:
            running, port, bundle = await _start_run_with_spares(
                nursery, sandbox_user, workspace, 3
            )
            # Right after the first sandbox serves, its spares are starting.
            below = descendants(running.process.pid)
            ports = _wardens(running.process.pid)
            os.kill(running.process.pid, signal.SIGINT)
            status = await running.process.wait()
    assert status == 0, "\n".join(running.lines)
    assert await wait_all_gone(below, limit=10) == []
    assert_nothing_left([port, *ports], bundle, mounts_before)
    # And no warden started after the look above (they name the workspace in their argv).
    with trio.fail_after(10):
        for pid in _pids_with(f"{workspace}:/work"):
            await wait_exit(pid)


UNDER_LOAD = r"""
import json, os, signal
import trio
from trio_sandbox import SandboxConfig, SandboxRestarted, SandboxUnavailable, open_sandbox

def children(pid):
    return [int(n) for n in os.listdir("/proc") if n.isdigit() and _parent(n) == pid]

def _parent(name):
    try:
        return int(open(f"/proc/{name}/stat").read().rpartition(")")[2].split()[1])
    except OSError:
        return None

def tool_server_pid(warden):
    pending = [warden]
    while pending:
        for pid in children(pending.pop()):
            pending.append(pid)
            try:
                argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"trio_sandbox.tools" in argv[1:4]:
                return pid
    raise AssertionError(f"no tool server below warden {warden}")

CALL_MIX = [
    ("run_command", {"command": "echo ok"}),
    ("run_command", {"command": "sleep 0.2; echo slept"}),
    ("view", {"path": "/etc/hostname"}),
    ("generate_password", {"length": 20}),
]

async def main():
    outcomes = []
    config = SandboxConfig(warm_spares=2, respawn_wait=30.0, stop_grace=5.0)

    async def caller(sandbox, n, stop):
        while not stop.is_set():
            name, arguments = CALL_MIX[n % len(CALL_MIX)]
            n += 1
            try:
                result = await sandbox.call_tool(name, arguments)
                outcomes.append("error result" if result.is_error else "result")
            except (SandboxRestarted, SandboxUnavailable) as exc:
                outcomes.append(type(exc).__name__)
            except Exception as exc:
                outcomes.append(f"untyped {type(exc).__name__}: {exc}")

    with trio.fail_after(120):
        async with open_sandbox(config) as sandbox, trio.open_nursery() as nursery:
            stop = trio.Event()
            for index in range(20):
                nursery.start_soon(caller, sandbox, index, stop)
            for kill in range(4):
                await trio.sleep(0.3)
                os.kill(tool_server_pid(sandbox.warden_pid), signal.SIGKILL)
                while sandbox.health.generation < kill + 2:
                    await sandbox.wait_health_change()
            await trio.sleep(0.5)
            stop.set()
    print(json.dumps(outcomes))

trio.run(main)
"""


@needs_bwrap
async def test_twenty_callers_through_kills_with_spares_end_typed(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    """The kills-under-load test runs with the default spare; here two, killed faster than the
    pool refills, so some respawns swap and some wait for a start — as root and as an ordinary
    user: every call ends in a result or a typed error."""
    outcomes = await sandbox_user.run_json("-c", UNDER_LOAD, home=workspace, limit=150)
    assert set(outcomes) <= {"result", "SandboxRestarted", "SandboxUnavailable"}, set(outcomes)
    assert outcomes.count("result") > 20
