"""The tool server: every tool registered on one :class:`McpServer`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from ..mcp import Implementation, McpServer
from ..program import VERSION as VERSION  # the tool server names it in its handshake
from ._commands import register_command_tools
from ._files import register_file_tools
from ._limits import DEFAULT_LIMITS, ToolLimits
from ._passwords import register_password_tool
from ._tasks import TaskManager, open_task_manager, register_task_tools

INSTRUCTIONS = (
    "Tools that run shell commands and read and edit files inside a sandbox. Relative paths"
    " resolve against the server's working directory. Use run_command for short commands and"
    " run_command_task for long-running ones."
)


def build_tool_server(
    *, tasks: TaskManager, workdir: Path | None = None, limits: ToolLimits = DEFAULT_LIMITS
) -> McpServer:
    """An McpServer offering every tool; background commands run in ``tasks``' nursery.

    ``workdir`` defaults to the task manager's. Most callers want :func:`open_tool_server`.
    """
    root = tasks.workdir if workdir is None else workdir
    server = McpServer(
        Implementation("trio-sandbox-tools", VERSION),
        instructions=INSTRUCTIONS,
    )
    register_command_tools(server, workdir=root, limits=limits, processes=tasks.processes)
    register_task_tools(server, manager=tasks, limits=limits)
    register_file_tools(server, workdir=root, limits=limits)
    register_password_tool(server, limits=limits)
    return server


@asynccontextmanager
async def open_tool_server(
    *, workdir: Path | None = None, limits: ToolLimits = DEFAULT_LIMITS, subreaper: bool = False
) -> AsyncIterator[McpServer]:
    """The tool server and the nursery of its background commands, which it cancels on exit.

    ``subreaper``: for the tool server's own process only (see :func:`open_task_manager`)."""
    root = Path.cwd() if workdir is None else workdir
    async with open_task_manager(workdir=root, limits=limits, subreaper=subreaper) as tasks:
        yield build_tool_server(tasks=tasks, workdir=root, limits=limits)
