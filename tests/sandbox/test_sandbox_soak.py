"""Soak: one persistent sandbox under a steady mix of calls for a bounded while (90 s in CI; set
TRIO_SANDBOX_SOAK_SECONDS for longer), with its tool server killed now and then, an upstream whose
tools come and go, and clients of the proxy that connect, call and leave (some in mid-call).

Asserted: the generation count is the kill count plus one; every call ended as a success,
SandboxRestarted or SandboxUnavailable; tasks, file descriptors and memory did not grow beyond a
bound. The figures are printed (run with -s) for NOTES.md.
"""

from __future__ import annotations

import collections
import json
import os
import random
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.sandbox.sandbox_fakes import all_tasks
from tests.sandbox.test_sandbox_faults_under_load import CALL_MIX, tool_server_pid
from trio_sandbox.mcp import (
    CallToolResult,
    Implementation,
    McpConnectionError,
    McpError,
    McpServer,
    RequestContext,
    Tool,
    open_mcp_client,
)
from trio_sandbox.proxy import InProcessUpstream
from trio_sandbox.sandbox import (
    RESTARTED_META_KEY,
    UNAVAILABLE_META_KEY,
    Sandbox,
    SandboxConfig,
    SandboxRestarted,
    SandboxUnavailable,
    open_sandbox,
)
from trio_sandbox.tls import load_client_ssl_context

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap"),
]

SOAK_SECONDS = float(os.environ.get("TRIO_SANDBOX_SOAK_SECONDS", "90"))
CALLERS = 20
KILL_EVERY = (8.0, 15.0)  # seconds, drawn at random in this range
# Growth allowed between the warm-up and the end of the run.
MAX_TASK_GROWTH = 10
MAX_FD_GROWTH = 16
MAX_RSS_GROWTH_BYTES = 64 * 1024 * 1024


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def _noop(arguments: dict[str, Any], ctx: RequestContext) -> str:
    return "noop"


class Counts:
    def __init__(self) -> None:
        self.by_kind: collections.Counter[str] = collections.Counter()
        self.unexpected: list[str] = []

    def record(self, outcome: object) -> None:
        kind = type(outcome).__name__
        if isinstance(outcome, CallToolResult) and outcome.is_error:
            # Through the proxy's HTTPS face the typed errors are isError results with a reason.
            meta = outcome.meta or {}
            if meta.get(RESTARTED_META_KEY):
                kind = "SandboxRestarted"
            elif meta.get(UNAVAILABLE_META_KEY):
                kind = "SandboxUnavailable"
            else:
                self.unexpected.append(outcome.text_content)
        self.by_kind[kind] += 1


async def embedded_caller(sandbox: Sandbox, rng: random.Random, counts: Counts) -> None:
    while True:
        name, arguments = rng.choice(CALL_MIX)
        try:
            counts.record(await sandbox.call_tool(name, arguments))
        except (SandboxRestarted, SandboxUnavailable) as exc:
            counts.record(exc)


async def remote_client(sandbox: Sandbox, bundle: Path, rng: random.Random, counts: Counts) -> None:
    """Connects over mutual TLS, calls a little, leaves (politely or in mid-call), again."""
    context = load_client_ssl_context(bundle)
    while True:
        try:
            async with open_mcp_client(sandbox.proxy_url, ssl_context=context) as client:
                for _ in range(rng.randrange(1, 6)):
                    with trio.move_on_after(rng.choice([0.05, 10.0])):  # sometimes hang up early
                        result = await client.call_tool("run_command", {"command": "echo hi"})
                        counts.record(result)
        except (McpConnectionError, McpError) as exc:
            counts.unexpected.append(f"remote client: {exc}")
        await trio.sleep(rng.uniform(0.1, 1.0))


async def churn_upstream_tools(server: McpServer, rng: random.Random) -> None:
    present = False
    while True:
        await trio.sleep(rng.uniform(1.0, 3.0))
        if present:
            server.remove_tool("churn")
        else:
            server.add_tool(Tool("churn", description="comes and goes"), _noop)
        present = not present
        await server.notify_list_changed("tools")


async def test_soak(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    churner = McpServer(Implementation("churn", "1"))
    churner.add_tool(Tool("steady", description="always there"), _noop)
    config = SandboxConfig(
        upstreams=[InProcessUpstream("extra", churner)], respawn_wait=20.0, health_interval=5.0
    )
    counts = Counts()
    kills = 0
    with trio.fail_after(SOAK_SECONDS + 120):
        async with open_sandbox(config) as sandbox:
            bundle = tmp_path / "bundle"
            sandbox.write_client_bundle(bundle)
            async with trio.open_nursery() as nursery:
                for _ in range(CALLERS):
                    nursery.start_soon(
                        embedded_caller, sandbox, random.Random(rng.random()), counts
                    )
                for _ in range(3):
                    nursery.start_soon(
                        remote_client, sandbox, bundle, random.Random(rng.random()), counts
                    )
                nursery.start_soon(churn_upstream_tools, churner, random.Random(rng.random()))
                await trio.sleep(3)  # warm-up: connections, pools and caches settle
                tasks_before, fds_before, rss_before = len(all_tasks()), open_fds(), rss_bytes()
                deadline = trio.current_time() + SOAK_SECONDS
                while trio.current_time() < deadline:
                    await trio.sleep(min(rng.uniform(*KILL_EVERY), deadline - trio.current_time()))
                    if trio.current_time() >= deadline:
                        break
                    warden = sandbox.warden_pid
                    pid = tool_server_pid(warden) if warden is not None else None
                    assert pid is not None, seed
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                    while sandbox.health.generation < kills + 1:
                        await sandbox.wait_health_change()
                await trio.sleep(3)  # let the last respawn's calls settle
                tasks_after, fds_after, rss_after = len(all_tasks()), open_fds(), rss_bytes()
                nursery.cancel_scope.cancel()
            generations = sandbox.health.generation

    figures = {
        "seed": seed,
        "seconds": SOAK_SECONDS,
        "kills": kills,
        "generations": generations,
        "outcomes": dict(counts.by_kind),
        "tasks": [tasks_before, tasks_after],
        "fds": [fds_before, fds_after],
        "rss_mib": [round(rss_before / 2**20, 1), round(rss_after / 2**20, 1)],
    }
    print("soak figures:", json.dumps(figures, sort_keys=True))
    assert counts.unexpected == [], figures
    assert set(counts.by_kind) <= {"CallToolResult", "SandboxRestarted", "SandboxUnavailable"}
    assert generations == kills + 1, figures
    assert sum(counts.by_kind.values()) > 20 * SOAK_SECONDS, figures  # it was under load
    assert tasks_after - tasks_before <= MAX_TASK_GROWTH, figures
    assert fds_after - fds_before <= MAX_FD_GROWTH, figures
    assert rss_after - rss_before <= MAX_RSS_GROWTH_BYTES, figures
