"""A healthy persistent sandbox keeps its generation: the same warden, the same /tmp, its
background tasks still running, long after every start-up deadline has passed.

The sandbox is real (bubblewrap, the real tool server); the clock runs 100 times faster than
real time, so ten ready_timeouts and dozens of health probes pass in a few real seconds. The
bug this guards against tore every sandbox down exactly ``ready_timeout`` after it started.
"""

from __future__ import annotations

import shutil

import pytest
import trio
import trio.testing

from trio_sandbox.sandbox import SandboxConfig, open_sandbox

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

RATE = 100.0  # virtual seconds per real second
READY_TIMEOUT = 30.0


@pytest.fixture
def fast_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(rate=RATE)


async def test_a_healthy_sandbox_outlives_its_start_deadlines(
    fast_clock: trio.testing.MockClock,
) -> None:
    config = SandboxConfig(
        ready_timeout=READY_TIMEOUT,
        # Real processes run in real time: the deadlines that bound them are scaled up.
        ca_timeout=60.0 * RATE,
        health_interval=30.0,
        health_timeout=10.0 * RATE / 10,
        stop_grace=5.0 * RATE,
    )
    with trio.fail_after(60 * RATE):
        async with open_sandbox(config) as sandbox:
            warden = sandbox.warden_pid
            await sandbox.call_tool("run_command", {"command": "echo kept > /tmp/mark"})
            started = await sandbox.call_tool(
                "run_command_task", {"command": "while true; do sleep 1; done"}
            )
            [task_id] = [
                line.removeprefix("Task ID: ")
                for line in started.text_content.splitlines()
                if line.startswith("Task ID: ")
            ]
            await trio.sleep(10 * READY_TIMEOUT)
            assert sandbox.health.generation == 1
            assert sandbox.health.healthy
            assert sandbox.health.consecutive_ok > 5  # the monitor probed all along
            assert sandbox.warden_pid == warden
            kept = await sandbox.call_tool("run_command", {"command": "cat /tmp/mark"})
            assert kept.text_content.splitlines()[0] == "kept"
            tasks = await sandbox.call_tool("get_all_tasks", {})
            [row] = [line for line in tasks.text_content.splitlines() if task_id in line]
            assert "| Running |" in row
