"""The ``run_command`` tool: one shell command, waited for, its output's tail returned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..mcp import CallToolResult, McpServer, RequestContext, Tool, ToolError
from ._errors import SpawnError
from ._limits import ToolLimits
from ._network_notes import NetworkNotes
from ._output import TailBuffer
from ._process import CommandProcesses, run_shell
from ._schema import object_schema, timeout_property


def command_script(command: str, limits: ToolLimits) -> str:
    """``command`` if the shell can be given it; a ToolError saying why not otherwise."""
    if "\0" in command:
        raise ToolError("the command contains a NUL character, which no shell script can hold")
    try:
        size = len(command.encode())
    except UnicodeEncodeError as exc:
        raise ToolError(f"the command is not valid Unicode: {exc.reason}") from None
    if size > limits.max_command_bytes:
        raise ToolError(
            f"the command is {size} bytes (UTF-8); the limit is {limits.max_command_bytes}:"
            " write long scripts to a file with the create tool and run that"
        )
    return command


def command_property(limits: ToolLimits, what: str) -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "description": f"{what} At most {limits.max_command_bytes} bytes (UTF-8).",
    }


def run_command_tool(limits: ToolLimits) -> Tool:
    return Tool(
        name="run_command",
        description=(
            "Run a shell command (`sh`) in the server's working directory and wait for it."
            " stdin is /dev/null; stdout and stderr are merged. The result ends with the exit"
            f" code. Output beyond {limits.command_output_bytes} bytes is cut from the start:"
            " the tail is kept and the number of dropped bytes is stated. On timeout or when the"
            " call is cancelled, the command and every process it started (whatever their"
            f" session or process group) get SIGTERM, then SIGKILL after {limits.kill_grace:g}"
            " s; the output so far is returned. Processes it leaves running in the background"
            " (`server &`) keep running, but their stdout and stderr are no longer read:"
            " redirect them to a file. They are killed if the sandbox's process limit is"
            " reached. Each call starts a fresh shell: `cd` and variables do not carry over."
            " Use run_command_task for long-running commands."
        ),
        input_schema=object_schema(
            {
                "command": command_property(limits, "The shell command to run."),
                "description": {
                    "type": "string",
                    "description": "What the command is for (not used to run it).",
                },
                "timeout": timeout_property(
                    limits,
                    "Seconds to wait before killing the command"
                    + (
                        "; no limit when omitted."
                        if limits.default_command_timeout is None
                        else f"; {limits.default_command_timeout:g} when omitted."
                    ),
                ),
            },
            required=("command",),
        ),
        annotations={"destructiveHint": True, "openWorldHint": True},
    )


def register_command_tools(
    server: McpServer, *, workdir: Path, limits: ToolLimits, processes: CommandProcesses
) -> None:
    notes = NetworkNotes.from_environment()

    async def run_command(arguments: dict[str, Any], ctx: RequestContext) -> CallToolResult:
        command = command_script(arguments["command"], limits)
        timeout = arguments.get("timeout", limits.default_command_timeout)
        output = TailBuffer(limits.command_output_bytes)
        started = notes.now()
        try:
            ended = await run_shell(
                command,
                cwd=workdir,
                output=output,
                time_limit=timeout,
                kill_grace=limits.kill_grace,
                output_drain=limits.output_drain,
                processes=processes,
            )
        except SpawnError as exc:
            raise ToolError(str(exc)) from exc
        text = output.render()
        if text and not text.endswith("\n"):
            text += "\n"
        network = await notes.since(started)
        if ended.timed_out:
            summary = (
                f"Command timed out after {timeout:g} s; the command and every process it"
                " started were killed."
            )
            return CallToolResult.text(f"{text}{summary}\n{network}".rstrip("\n"), is_error=True)
        return CallToolResult.text(f"{text}[{ended.describe()}]\n{network}".rstrip("\n"))

    server.add_tool(run_command_tool(limits), run_command)
