"""Background commands: a task manager owning a nursery, and the tools that drive it."""

from __future__ import annotations

import datetime
import enum
import math
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from ..concurrency import single_error
from ..mcp import CallToolResult, McpServer, RequestContext, Tool, ToolError, ToolHandler
from ._commands import command_property, command_script
from ._errors import SpawnError, ToolServerWedged
from ._limits import DEFAULT_LIMITS, ToolLimits
from ._output import TailBuffer, clean_text
from ._process import CommandProcesses, ShellExit, run_shell
from ._schema import object_schema, timeout_property


class TaskStatus(enum.Enum):
    # The original tool server's spellings, which agents may match on.
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    TIMED_OUT = "TimedOut"


@attrs.define(eq=False)
class BackgroundTask:
    """One background command: its live output tail and, once over, how it ended."""

    task_id: str
    command: str
    description: str | None
    timeout: float | None
    output: TailBuffer
    started_at: datetime.datetime
    started_clock: float
    status: TaskStatus = TaskStatus.RUNNING
    exit: ShellExit | None = None
    error: str | None = None
    finished_clock: float | None = None
    cancel_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    finished: trio.Event = attrs.field(factory=trio.Event)

    @property
    def running(self) -> bool:
        return self.status is TaskStatus.RUNNING

    def duration(self) -> float:
        end = self.finished_clock if self.finished_clock is not None else trio.current_time()
        return end - self.started_clock

    def outcome(self) -> str:
        if self.error is not None:
            return self.error
        if self.status is TaskStatus.CANCELLED:
            return "cancelled; the command and every process it started were killed"
        if self.exit is not None:
            return self.exit.describe()
        return "still running"


@attrs.define(eq=False)
class TaskManager:
    """Starts background commands in a nursery it does not own; see :func:`open_task_manager`."""

    _nursery: trio.Nursery
    workdir: Path
    limits: ToolLimits
    processes: CommandProcesses
    _tasks: dict[str, BackgroundTask] = attrs.field(factory=dict)
    closed: bool = False

    def start(
        self, command: str, *, description: str | None, timeout: float | None
    ) -> BackgroundTask:
        if self.closed:
            raise ToolError("the tool server is shutting down; no new background tasks")
        running = sum(1 for task in self._tasks.values() if task.running)
        if running >= self.limits.max_running_tasks:
            raise ToolError(
                f"{running} background tasks are already running (the limit);"
                " wait for or cancel some first (get_all_tasks lists them)"
            )
        task_id = secrets.token_hex(4)
        while task_id in self._tasks:
            task_id = secrets.token_hex(4)
        task = BackgroundTask(
            task_id=task_id,
            command=command,
            description=description,
            timeout=timeout,
            output=TailBuffer(self.limits.task_output_bytes),
            started_at=datetime.datetime.now(datetime.UTC),
            started_clock=trio.current_time(),
        )
        self._tasks[task_id] = task
        self._forget_old_tasks()
        self._nursery.start_soon(self._run, task, name=f"background task {task_id}")
        return task

    async def _run(self, task: BackgroundTask) -> None:
        try:
            with task.cancel_scope:
                try:
                    task.exit = await run_shell(
                        task.command,
                        cwd=self.workdir,
                        output=task.output,
                        time_limit=task.timeout,
                        kill_grace=self.limits.kill_grace,
                        output_drain=self.limits.output_drain,
                        processes=self.processes,
                    )
                except SpawnError as exc:
                    task.error = str(exc)
        finally:
            task.finished_clock = trio.current_time()
            if task.cancel_scope.cancelled_caught or (task.exit is None and task.error is None):
                task.status = TaskStatus.CANCELLED
            elif task.error is not None:
                task.status = TaskStatus.FAILED
            elif task.exit is not None and task.exit.timed_out:
                task.status = TaskStatus.TIMED_OUT
            elif task.exit is not None and task.exit.returncode == 0:
                task.status = TaskStatus.COMPLETED
            else:
                task.status = TaskStatus.FAILED
            task.finished.set()

    def _forget_old_tasks(self) -> None:
        finished = [task for task in self._tasks.values() if not task.running]
        for task in finished[: max(0, len(finished) - self.limits.max_kept_tasks)]:
            del self._tasks[task.task_id]

    def get(self, task_id: str) -> BackgroundTask:
        task = self._tasks.get(task_id.strip())
        if task is None:
            known = ", ".join(self._tasks) or "none"
            raise ToolError(f"no background task with id {task_id!r} (known ids: {known})")
        return task

    @property
    def tasks(self) -> list[BackgroundTask]:
        return list(self._tasks.values())

    def cancel(self, task_id: str) -> BackgroundTask:
        task = self.get(task_id)
        task.cancel_scope.cancel()
        return task


async def _end_when_wedged(processes: CommandProcesses) -> None:
    reason = await processes.wait_wedged()
    # The call that found it gets its answer first.
    await trio.sleep(WEDGED_EXIT_DELAY)
    raise ToolServerWedged(f"{reason}: the tool server stops so that the sandbox is replaced")


# Between finding that no process can start and raising ToolServerWedged.
WEDGED_EXIT_DELAY = 0.5


@asynccontextmanager
async def open_task_manager(
    *, workdir: Path | None = None, limits: ToolLimits = DEFAULT_LIMITS, subreaper: bool = False
) -> AsyncIterator[TaskManager]:
    """A task manager whose background commands live no longer than this block.

    On exit every still-running command is cancelled, which kills it and every process it
    started. With ``subreaper`` (the tool server's own process only, see
    :class:`CommandProcesses`) orphans are reaped here, and the block raises
    :class:`ToolServerWedged` when no process can be started any more.
    """
    processes = CommandProcesses(limits.sandbox, subreaper=subreaper)
    with single_error():
        async with trio.open_nursery() as nursery:
            manager = TaskManager(
                nursery, Path.cwd() if workdir is None else workdir, limits, processes
            )
            nursery.start_soon(processes.serve_reaper)
            if subreaper:
                nursery.start_soon(_end_when_wedged, processes)
            try:
                yield manager
            finally:
                manager.closed = True
                nursery.cancel_scope.cancel()


# --- rendering --------------------------------------------------------------------------------


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def render_task_details(task: BackgroundTask) -> str:
    lines = [
        f"Task ID: {task.task_id}",
        f"Status: {task.status.value}",
        f"Command: {task.command}",
    ]
    if task.description:
        lines.append(f"Description: {task.description}")
    lines += [
        f"Started: {task.started_at.isoformat(timespec='seconds')}",
        f"Duration: {task.duration():.2f}s",
        f"Outcome: {task.outcome()}",
        "Output:",
        task.output.render() or ("(no output yet)" if task.running else "(no output)"),
    ]
    return "\n".join(lines)


def render_task_table(tasks: Sequence[BackgroundTask]) -> str:
    if not tasks:
        return "No background tasks."
    rows = [
        "| Task ID | Status | Command | Duration | Outcome | Output (last line) |",
        "|---|---|---|---|---|---|",
    ]
    for task in tasks:
        tail = clean_text(task.output.kept).rstrip("\n").rpartition("\n")[2]
        cells = [
            task.task_id,
            task.status.value,
            _one_line(task.command, 80),
            f"{task.duration():.2f}s",
            task.outcome(),
            _one_line(tail, 80),
        ]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    rows.append(f"\nTotal: {len(tasks)} task(s)")
    return "\n".join(rows)


# --- tools ------------------------------------------------------------------------------------

_TASK_ID = {"type": "string", "minLength": 1, "description": "A task id from run_command_task."}


def task_tools(limits: ToolLimits) -> dict[str, Tool]:
    return {
        "run_command_task": Tool(
            name="run_command_task",
            description=(
                "Start a shell command (`sh`) in the background and return at once with its"
                " task id. Use it for servers, watchers, long builds. Follow it with"
                " get_task_details, wait_for_tasks or cancel_task. The command and every process"
                " it starts are killed on cancel_task, on its timeout, and when the tool server"
                f" shuts down. The last {limits.task_output_bytes} bytes of its output are kept."
            ),
            input_schema=object_schema(
                {
                    "command": command_property(limits, "The shell command."),
                    "description": {
                        "type": "string",
                        "description": "What the command is for (not used to run it).",
                    },
                    "timeout": timeout_property(
                        limits, "Seconds after which the task is killed; no limit when omitted."
                    ),
                },
                required=("command",),
            ),
            annotations={"destructiveHint": True, "openWorldHint": True},
        ),
        "get_task_details": Tool(
            name="get_task_details",
            description=(
                "Status (Running, Completed, Failed, Cancelled, TimedOut), duration, exit code"
                " and output so far of one background task."
            ),
            input_schema=object_schema({"task_id": _TASK_ID}, required=("task_id",)),
            annotations={"readOnlyHint": True},
        ),
        "get_all_tasks": Tool(
            name="get_all_tasks",
            description=(
                "A table of all background tasks: id, status, command, duration, outcome and"
                " the last line of output."
            ),
            input_schema=object_schema(
                {
                    # Older clients always send it; accepted and ignored.
                    "view": {
                        "type": "string",
                        "description": "Ignored; accepted for compatibility.",
                    }
                }
            ),
            annotations={"readOnlyHint": True},
        ),
        "cancel_task": Tool(
            name="cancel_task",
            description=(
                "Cancel a running background task: the command and every process it started get"
                f" SIGTERM, then SIGKILL after {limits.kill_grace:g} s. Returns once they are"
                " killed."
            ),
            input_schema=object_schema({"task_id": _TASK_ID}, required=("task_id",)),
            annotations={"destructiveHint": True},
        ),
        "wait_for_tasks": Tool(
            name="wait_for_tasks",
            description=(
                "Wait until the given background tasks have all finished, then show them."
                " task_ids: a space-separated string or a list of ids; all running tasks when"
                " omitted. With a timeout, returns an error listing the tasks still running"
                " (they keep running). Unknown ids are an error."
            ),
            input_schema=object_schema(
                {
                    "task_ids": {
                        "description": "Task ids: a space-separated string or an array of strings.",
                        "anyOf": [
                            {"type": "string"},
                            {"type": "array", "items": {"type": "string", "minLength": 1}},
                        ],
                    },
                    "timeout": timeout_property(
                        limits, "Seconds to wait at most; wait indefinitely when omitted."
                    ),
                }
            ),
            annotations={"readOnlyHint": True},
        ),
    }


def register_task_tools(server: McpServer, *, manager: TaskManager, limits: ToolLimits) -> None:
    tools = task_tools(limits)

    async def run_command_task(arguments: dict[str, Any], ctx: RequestContext) -> str:
        task = manager.start(
            command_script(arguments["command"], limits),
            description=arguments.get("description"),
            timeout=arguments.get("timeout"),
        )
        return (
            f"Background task started.\nTask ID: {task.task_id}\nStatus: {task.status.value}\n"
            f"Started: {task.started_at.isoformat(timespec='seconds')}"
        )

    async def get_task_details(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return render_task_details(manager.get(arguments["task_id"]))

    async def get_all_tasks(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return render_task_table(manager.tasks)

    async def cancel_task(arguments: dict[str, Any], ctx: RequestContext) -> str:
        task = manager.get(arguments["task_id"])
        if not task.running:
            raise ToolError(
                f"task {task.task_id} is not running (status {task.status.value}: {task.outcome()})"
            )
        manager.cancel(task.task_id)
        await task.finished.wait()
        return (
            f"Task {task.task_id} cancelled; the command and every process it started were"
            " killed.\n\n" + render_task_details(task)
        )

    async def wait_for_tasks(arguments: dict[str, Any], ctx: RequestContext) -> CallToolResult:
        raw_ids = arguments.get("task_ids")
        if raw_ids is None:
            tasks = [task for task in manager.tasks if task.running]
        else:
            ids = raw_ids.replace(",", " ").split() if isinstance(raw_ids, str) else raw_ids
            if not ids:
                raise ToolError(
                    "task_ids is empty; give task ids, or omit it to wait for all running tasks"
                )
            tasks = list({task.task_id: task for task in map(manager.get, ids)}.values())
        timeout = arguments.get("timeout")
        with trio.move_on_after(math.inf if timeout is None else timeout):
            for done, task in enumerate(tasks):
                await ctx.report_progress(done, len(tasks), f"waiting for task {task.task_id}")
                await task.finished.wait()
            await ctx.report_progress(len(tasks), len(tasks), "all tasks finished")
        table = render_task_table(tasks)
        still_running = [task.task_id for task in tasks if task.running]
        if still_running:
            return CallToolResult.text(
                f"Timed out after {timeout:g} s; still running:"
                f" {' '.join(still_running)}\n\n{table}",
                is_error=True,
            )
        return CallToolResult.text(table)

    handlers: dict[str, ToolHandler] = {
        "run_command_task": run_command_task,
        "get_task_details": get_task_details,
        "get_all_tasks": get_all_tasks,
        "cancel_task": cancel_task,
        "wait_for_tasks": wait_for_tasks,
    }
    for name, handler in handlers.items():
        server.add_tool(tools[name], handler)
