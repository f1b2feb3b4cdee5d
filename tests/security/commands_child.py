"""A program that embeds open_sandbox and runs attack steps against it, printing one JSON report,
so that the command attacks run as root and as an ordinary user (the sandbox user's own program).

    python commands_child.py < PLAN    # {"config": {...}, "steps": [...]}

Steps: ``{"call": TOOL, "args": {...}, "cancel_after": SECONDS?}`` (its text and isError, or
the exception's type and message); ``{"procs": true}`` (the processes of the sandbox, seen from
the host: everything in the pid namespace of the sandbox, and which of them descend from the
tool server); ``{"sleep": SECONDS}``; ``{"generation": N}`` (until the Nth sandbox serves).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import trio

from trio_sandbox import SandboxConfig, open_sandbox


def _table() -> dict[int, int]:
    table: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            table[int(name)] = int(stat[stat.rfind(b")") + 2 :].split()[1])
    return table


def _below(root: int, table: dict[int, int]) -> list[int]:
    found, pending = [], [pid for pid, ppid in table.items() if ppid == root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending += [child for child, ppid in table.items() if ppid == pid]
    return found


def _ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _cmdline(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""
    return text[:200]


def sandbox_processes(warden: int) -> dict[str, Any]:
    """The sandbox's processes from the host's side: the pid namespace below the warden."""
    table = _table()
    mine = _ns(warden)
    below = _below(warden, table)
    inside = [pid for pid in below if _ns(pid) not in (None, mine)]
    namespaces = {_ns(pid) for pid in inside}
    everything = [pid for pid in table if _ns(pid) in namespaces]
    # setpriv's command line names the tool server too: the tool server is the one below it.
    named = [pid for pid in everything if "trio_sandbox.tools" in _cmdline(pid)]
    servers = [pid for pid in named if not set(named) & set(_below(pid, table))]
    return {
        "namespaces": len(namespaces),
        "all": [_cmdline(pid) for pid in everything],
        "tool_servers": len(servers),
        "left": [_cmdline(pid) for server in servers for pid in _below(server, table)],
    }


# The ids of the background tasks started so far: "$task" in a step's arguments is the last.
task_ids: list[str] = []


async def run_step(sandbox: Any, step: dict[str, Any]) -> dict[str, Any]:
    if "sleep" in step:
        await trio.sleep(step["sleep"])
        return {}
    if "generation" in step:
        with trio.fail_after(step.get("within", 30.0)):
            while sandbox.health.generation < step["generation"] or not sandbox.health.healthy:
                await sandbox.wait_health_change()
        return {}
    if "procs" in step:
        # Signals take a moment to be acted on: poll briefly for an empty tree.
        report = sandbox_processes(sandbox.warden_pid)
        with trio.move_on_after(step.get("within", 3.0)):
            while report["left"]:
                await trio.sleep(0.05)
                report = sandbox_processes(sandbox.warden_pid)
        return report
    args = {key: task_ids[-1] if value == "$task" else value for key, value in step["args"].items()}
    started = trio.current_time()
    with trio.move_on_after(step.get("cancel_after", 120)) as scope:
        try:
            result = await sandbox.call_tool(step["call"], args)
        except Exception as exc:
            return {"exception": type(exc).__name__, "text": str(exc)}
    if scope.cancelled_caught:
        return {"cancelled": True}
    task_ids.extend(re.findall(r"^Task ID: (\w+)$", result.text_content, flags=re.MULTILINE))
    return {
        "text": result.text_content,
        "is_error": result.is_error,
        "seconds": trio.current_time() - started,
    }


async def main(plan: dict[str, Any]) -> None:
    results = []
    async with open_sandbox(SandboxConfig(**plan.get("config", {}))) as sandbox:
        for step in plan["steps"]:
            results.append(await run_step(sandbox, step))
        generation = sandbox.health.generation
    print(json.dumps({"results": results, "generation": generation}))


if __name__ == "__main__":
    trio.run(main, json.loads(sys.stdin.read()))
