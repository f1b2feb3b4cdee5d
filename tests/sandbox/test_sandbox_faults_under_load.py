"""A real sandbox (bubblewrap, the real tool server) killed at random moments while 20 callers are
busy: every call ends as a success, SandboxRestarted or SandboxUnavailable — none as an internal
error, none hanging — and the log has one line per failed call and no traceback."""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.cli.cli_harness import descendants
from trio_sandbox.mcp import CallToolResult
from trio_sandbox.sandbox import (
    Sandbox,
    SandboxConfig,
    SandboxRestarted,
    SandboxUnavailable,
    open_sandbox,
)

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

CALLERS = 20
KILLS = 3
# A hang guard for the whole run (real processes): nothing here is timed.
RUN_LIMIT = 120


def tool_server_pid(warden_pid: int) -> int | None:
    """The tool server's host pid: the python below the warden that runs trio_sandbox.tools
    (not bwrap or setpriv, whose command lines name it too)."""
    for info in descendants(warden_pid):
        try:
            argv = Path(f"/proc/{info.pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"trio_sandbox.tools" in argv[1:4]:
            return info.pid
    return None


CALL_MIX: list[tuple[str, dict[str, Any]]] = [
    ("run_command", {"command": "echo ok"}),
    ("run_command", {"command": "sleep 0.2; echo slept"}),
    ("view", {"path": "/etc/hostname"}),
    ("generate_password", {"length": 20}),
]


async def caller(sandbox: Sandbox, rng: random.Random, stop: trio.Event, out: list[object]) -> None:
    while not stop.is_set():
        name, arguments = rng.choice(CALL_MIX)
        try:
            out.append(await sandbox.call_tool(name, arguments))
        except (SandboxRestarted, SandboxUnavailable) as exc:
            out.append(exc)


async def test_kills_under_load_end_every_call_typed(caplog: pytest.LogCaptureFixture) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    caplog.set_level(logging.WARNING)
    outcomes: list[object] = []
    config = SandboxConfig(respawn_wait=20.0, stop_grace=5.0)
    with trio.fail_after(RUN_LIMIT):
        async with open_sandbox(config) as sandbox, trio.open_nursery() as nursery:
            stop = trio.Event()
            for _ in range(CALLERS):
                nursery.start_soon(caller, sandbox, random.Random(rng.random()), stop, outcomes)
            for kill in range(KILLS):
                await trio.sleep(rng.uniform(0.5, 2.5))
                warden = sandbox.warden_pid
                assert warden is not None
                pid = tool_server_pid(warden)
                assert pid is not None, f"no tool server below warden {warden}"
                os.kill(pid, signal.SIGKILL)
                while sandbox.health.generation < kill + 2:
                    await sandbox.wait_health_change()
            await trio.sleep(rng.uniform(0.5, 1.5))
            stop.set()
        generations = sandbox.health.generation

    failed = [item for item in outcomes if not isinstance(item, CallToolResult)]
    kinds = {type(item).__name__ for item in outcomes}
    assert kinds <= {"CallToolResult", "SandboxRestarted", "SandboxUnavailable"}, (seed, kinds)
    errors = [item for item in outcomes if isinstance(item, CallToolResult) and item.is_error]
    assert errors == [], (seed, errors)
    assert generations == KILLS + 1, seed
    assert len(outcomes) > 10 * CALLERS, (seed, len(outcomes))  # they really were busy
    # One log line per failed call, and not a single traceback.
    assert [r for r in caplog.records if r.exc_info] == [], seed
    call_lines = [r for r in caplog.records if "tools/call" in r.getMessage()]
    assert len(call_lines) == len(failed), (seed, len(call_lines), len(failed))
    downs = [r for r in caplog.records if r.getMessage().startswith("sandbox down")]
    backs = [r for r in caplog.records if r.getMessage().startswith("sandbox back")]
    assert len(downs) == len(backs) == KILLS, seed
