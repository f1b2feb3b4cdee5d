"""Background tasks: lifecycle, waiting, cancellation, and no process outliving the manager."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from tests.tools.tools_harness import (
    SPAWN_GRANDCHILDREN,
    ToolClient,
    fast_limits,
    wait_for_pid_file,
    wait_until_gone,
)
from trio_sandbox.tools import TaskStatus, build_tool_server, open_task_manager, open_tool_server


def task_id_of(text: str) -> str:
    match = re.search(r"^Task ID: (\w+)$", text, flags=re.MULTILINE)
    assert match is not None, text
    return match.group(1)


async def test_a_task_runs_in_the_background_and_reports_its_outcome(
    tool_client: ToolClient,
) -> None:
    started = await tool_client.text("run_command_task", {"command": "echo hello; exit 4"})
    assert "Status: Running" in started
    task_id = task_id_of(started)
    table = await tool_client.text("wait_for_tasks", {"task_ids": task_id})
    assert f"| {task_id} | Failed |" in table
    assert "exit code 4" in table
    details = await tool_client.text("get_task_details", {"task_id": task_id})
    assert "Status: Failed" in details
    assert "Outcome: exit code 4" in details
    assert details.endswith("Output:\nhello\n")


async def test_wait_for_tasks_accepts_strings_lists_and_nothing(tool_client: ToolClient) -> None:
    ids = [
        task_id_of(await tool_client.text("run_command_task", {"command": f"echo {n}"}))
        for n in range(3)
    ]
    assert "Completed" in await tool_client.text("wait_for_tasks", {"task_ids": ids[:2]})
    assert "Completed" in await tool_client.text(
        "wait_for_tasks", {"task_ids": f"{ids[2]}, {ids[0]}"}
    )
    await tool_client.text("wait_for_tasks")
    table = await tool_client.text("get_all_tasks", {"view": "all"})
    assert table.count("| Completed |") == 3
    assert table.endswith("Total: 3 task(s)")


async def test_wait_for_tasks_times_out_with_an_error_and_the_task_keeps_running(
    autojump_clock: trio.testing.MockClock, tool_client: ToolClient
) -> None:
    task_id = task_id_of(await tool_client.text("run_command_task", {"command": "sleep 1000"}))
    start = trio.current_time()
    message = await tool_client.error("wait_for_tasks", {"task_ids": [task_id], "timeout": 30})
    assert trio.current_time() - start == pytest.approx(30)
    assert message.startswith(f"Timed out after 30 s; still running: {task_id}")
    assert "Status: Running" in await tool_client.text("get_task_details", {"task_id": task_id})


async def test_a_task_timeout_kills_it(tool_client: ToolClient, tmp_path: Path) -> None:
    started = await tool_client.text(
        "run_command_task", {"command": SPAWN_GRANDCHILDREN, "timeout": 1}
    )
    pids = await wait_for_pid_file(tmp_path / "pids.txt", 3)
    table = await tool_client.text("wait_for_tasks", {"task_ids": task_id_of(started)})
    assert "| TimedOut |" in table
    assert wait_until_gone(pids) == []


async def test_cancel_task_kills_the_process_group(tool_client: ToolClient, tmp_path: Path) -> None:
    task_id = task_id_of(
        await tool_client.text("run_command_task", {"command": SPAWN_GRANDCHILDREN})
    )
    pids = await wait_for_pid_file(tmp_path / "pids.txt", 3)
    text = await tool_client.text("cancel_task", {"task_id": task_id})
    assert "Status: Cancelled" in text
    assert wait_until_gone(pids) == []
    message = await tool_client.error("cancel_task", {"task_id": task_id})
    assert message.startswith(f"task {task_id} is not running (status Cancelled")


async def test_unknown_task_ids_are_errors(tool_client: ToolClient) -> None:
    message = await tool_client.error("get_task_details", {"task_id": "nope"})
    assert message == "no background task with id 'nope' (known ids: none)"
    assert "no background task with id 'nope'" in await tool_client.error(
        "wait_for_tasks", {"task_ids": "nope"}
    )
    assert "task_ids is empty" in await tool_client.error("wait_for_tasks", {"task_ids": " "})
    assert "at 'task_id'" in await tool_client.error("cancel_task", {"task_id": 3})


async def test_the_running_task_limit_is_enforced(tmp_path: Path) -> None:
    async with open_tool_server(
        workdir=tmp_path, limits=fast_limits(max_running_tasks=2)
    ) as server:
        client = ToolClient(server, server.open_session())
        for _ in range(2):
            await client.text("run_command_task", {"command": "sleep 1000"})
        message = await client.error("run_command_task", {"command": "sleep 1000"})
        assert message.startswith("2 background tasks are already running (the limit)")


async def test_leaving_the_task_manager_kills_every_running_task(tmp_path: Path) -> None:
    async with open_task_manager(workdir=tmp_path, limits=fast_limits()) as manager:
        server = build_tool_server(tasks=manager, workdir=tmp_path, limits=fast_limits())
        client = ToolClient(server, server.open_session())
        await client.text("run_command_task", {"command": SPAWN_GRANDCHILDREN})
        pids = await wait_for_pid_file(tmp_path / "pids.txt", 3)
    assert [task.status for task in manager.tasks] == [TaskStatus.CANCELLED]
    assert wait_until_gone(pids) == []
    message = await client.error("run_command_task", {"command": "true"})
    assert message == "the tool server is shutting down; no new background tasks"


async def test_finished_tasks_beyond_the_kept_limit_are_forgotten(tmp_path: Path) -> None:
    async with open_tool_server(workdir=tmp_path, limits=fast_limits(max_kept_tasks=2)) as server:
        client = ToolClient(server, server.open_session())
        ids = []
        for _ in range(4):
            ids.append(task_id_of(await client.text("run_command_task", {"command": "true"})))
            await client.text("wait_for_tasks", {"task_ids": ids[-1]})
        table = await client.text("get_all_tasks")
    assert [task_id in table for task_id in ids] == [False, True, True, True]
