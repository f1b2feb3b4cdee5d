"""Helpers for the tool tests: tool calls go through the real MCP server core, no transport."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import attrs
import trio

from trio_sandbox.mcp import (
    CallToolResult,
    ErrorResponse,
    McpServer,
    Message,
    Notification,
    Request,
    Response,
)
from trio_sandbox.mcp.lowlevel import ServerSession
from trio_sandbox.tools import ToolLimits


@attrs.define(eq=False)
class ToolClient:
    """Calls tools on a server session and keeps what the session sent back."""

    server: McpServer
    session: ServerSession
    notifications: list[Notification] = attrs.field(factory=list)
    _next_id: int = 0

    def next_request_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def call(self, name: str, arguments: dict[str, Any] | None = None) -> CallToolResult:
        """One tools/call; its result (tool failures are results with is_error)."""
        request_id = self.next_request_id()
        responses: list[Message] = []

        async def send(message: Message) -> None:
            if isinstance(message, Notification):
                self.notifications.append(message)
            else:
                responses.append(message)

        params: dict[str, Any] = {"name": name}
        if arguments is not None:
            params["arguments"] = arguments
        await self.session.handle_request(Request(request_id, "tools/call", params), send)
        assert len(responses) == 1, responses
        response = responses[0]
        assert isinstance(response, Response), response
        assert not isinstance(response, ErrorResponse)
        return CallToolResult.from_json(response.result)

    async def call_or_none(self, name: str, arguments: dict[str, Any] | None = None) -> None:
        """A call whose request may be cancelled (then no response is sent at all)."""
        request_id = self.next_request_id()
        params: dict[str, Any] = {"name": name, "arguments": arguments or {}}

        async def send(message: Message) -> None:
            pass

        await self.session.handle_request(Request(request_id, "tools/call", params), send)

    async def text(self, name: str, arguments: dict[str, Any] | None = None) -> str:
        """The text of a call that must succeed."""
        result = await self.call(name, arguments)
        assert not result.is_error, result.text_content
        return result.text_content

    async def error(self, name: str, arguments: dict[str, Any] | None = None) -> str:
        """The message of a call that must fail."""
        result = await self.call(name, arguments)
        assert result.is_error, result.text_content
        return result.text_content


def fast_limits(**changes: Any) -> ToolLimits:
    """Limits with a short kill grace, so cancellation tests do not wait seconds for SIGKILL."""
    return attrs.evolve(ToolLimits(kill_grace=0.5), **changes)


# --- processes --------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """Whether pid names a live process (a zombie waiting to be reaped counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def wait_until_gone(pids: list[int], within: float = 5.0) -> list[int]:
    """The pids still alive after polling for up to ``within`` real seconds (signals take a
    moment to be acted on)."""
    deadline = time.monotonic() + within
    alive = [pid for pid in pids if process_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [pid for pid in alive if process_alive(pid)]
    return alive


async def wait_for_pid_file(path: Path, count: int, within: float = 10.0) -> list[int]:
    """Wait (in real time, in a thread: virtual clocks must not rush a real process) for a file
    a command writes with at least ``count`` pids, and return them."""

    def poll() -> list[int]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if path.exists():
                pids = [int(word) for word in path.read_text().split()]
                if len(pids) >= count:
                    return pids
            time.sleep(0.01)
        raise AssertionError(f"{path} did not get {count} pids within {within} s")

    return await trio.to_thread.run_sync(poll)


def pids_in(text: str) -> list[int]:
    return [int(word) for word in re.findall(r"^pid (\d+)$", text, flags=re.MULTILINE)]


# A command that leaves two grandchildren (background sleeps) and records all three pids
# atomically in pids.txt: "shell child child".
SPAWN_GRANDCHILDREN = (
    "sleep 1000 & a=$!; sleep 1000 & b=$!; echo $$ $a $b > pids.tmp && mv pids.tmp pids.txt;"
    " echo pid $a; echo pid $b; wait"
)


# The tool names of the original tool server, which agents written for it call.
ORIGINAL_TOOL_NAMES = frozenset(
    {
        "run_command",
        "run_command_task",
        "get_task_details",
        "get_all_tasks",
        "cancel_task",
        "wait_for_tasks",
        "view",
        "create",
        "str_replace",
        "remove",
        "generate_password",
    }
)
