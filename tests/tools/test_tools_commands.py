"""run_command: exit codes, output caps, timeouts and cancellation killing whole process groups."""

from __future__ import annotations

import collections
import secrets
import string
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from tests.tools.tools_harness import (
    ORIGINAL_TOOL_NAMES,
    SPAWN_GRANDCHILDREN,
    ToolClient,
    fast_limits,
    pids_in,
    wait_for_pid_file,
    wait_until_gone,
)
from trio_sandbox.mcp import Notification, Request
from trio_sandbox.tools import generate_password, open_tool_server
from trio_sandbox.tools._passwords import SYMBOLS, _uniform_choices


async def test_exit_code_and_merged_output_are_reported(tool_client: ToolClient) -> None:
    text = await tool_client.text("run_command", {"command": "echo out; echo err >&2; exit 3"})
    assert text == "out\nerr\n[exit code 3]"
    assert (await tool_client.text("run_command", {"command": "true"})) == "[exit code 0]"


async def test_a_signal_death_is_named(tool_client: ToolClient) -> None:
    text = await tool_client.text("run_command", {"command": "kill -KILL $$"})
    assert text == "[killed by signal SIGKILL]"


async def test_commands_run_in_the_workdir_with_stdin_from_dev_null(
    tool_client: ToolClient, tmp_path: Path
) -> None:
    text = await tool_client.text("run_command", {"command": "pwd; cat; echo done"})
    assert text == f"{tmp_path}\ndone\n[exit code 0]"


async def test_output_cap_keeps_the_tail_and_counts_what_was_dropped(tmp_path: Path) -> None:
    limit = 1000
    full = "".join(f"{n}\n" for n in range(1, 20_001)).encode()
    async with open_tool_server(
        workdir=tmp_path, limits=fast_limits(command_output_bytes=limit)
    ) as server:
        client = ToolClient(server, server.open_session())
        text = await client.text("run_command", {"command": "seq 1 20000"})
    dropped = len(full) - limit
    head, _, rest = text.partition("\n")
    assert head == (
        f"[output truncated: the first {dropped} bytes were dropped;"
        f" showing the last {limit} of {len(full)} bytes]"
    )
    assert rest == full[-limit:].decode() + "[exit code 0]"


async def test_timeout_kills_the_shell_and_its_grandchildren(tool_client: ToolClient) -> None:
    # Real time on purpose: the shell must get to start its children before the timeout.
    result = await tool_client.call("run_command", {"command": SPAWN_GRANDCHILDREN, "timeout": 1})
    assert result.is_error
    assert result.text_content.endswith(
        "Command timed out after 1 s; the command and every process it started were killed."
    )
    grandchildren = pids_in(result.text_content)
    assert len(grandchildren) == 2
    assert wait_until_gone(grandchildren) == []


async def test_grandchildren_ignoring_sigterm_are_killed_too(tool_client: ToolClient) -> None:
    command = "(trap '' TERM; sleep 1000) & echo pid $!; trap '' TERM; wait"
    result = await tool_client.call("run_command", {"command": command, "timeout": 0.5})
    assert result.is_error
    (child,) = pids_in(result.text_content)
    assert wait_until_gone([child]) == []


async def test_cancelling_the_call_kills_its_process_group(
    tool_client: ToolClient, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tool_client.call, "run_command", {"command": SPAWN_GRANDCHILDREN})
        pids = await wait_for_pid_file(tmp_path / "pids.txt", 3)
        nursery.cancel_scope.cancel()
    assert wait_until_gone(pids) == []


async def test_notifications_cancelled_kills_the_process_group(
    tool_client: ToolClient, tmp_path: Path
) -> None:
    """The client's cancel notification (or its going away: session.close) ends the command."""
    sent: list[object] = []

    async def send(message: object) -> None:
        sent.append(message)

    request = Request(
        99, "tools/call", {"name": "run_command", "arguments": {"command": SPAWN_GRANDCHILDREN}}
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tool_client.session.handle_request, request, send)
        pids = await wait_for_pid_file(tmp_path / "pids.txt", 3)
        tool_client.session.handle_notification(
            Notification("notifications/cancelled", {"requestId": 99})
        )
    assert sent == []  # a cancelled request gets no response
    assert wait_until_gone(pids) == []


async def test_closing_the_session_kills_running_commands(
    tool_client: ToolClient, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            tool_client.call_or_none, "run_command", {"command": SPAWN_GRANDCHILDREN}
        )
        pids = await wait_for_pid_file(tmp_path / "pids.txt", 3)
        tool_client.server.close_session(tool_client.session)
    assert wait_until_gone(pids) == []


async def test_a_missing_workdir_is_a_tool_error(tmp_path: Path) -> None:
    async with open_tool_server(workdir=tmp_path / "gone", limits=fast_limits()) as server:
        client = ToolClient(server, server.open_session())
        message = await client.error("run_command", {"command": "true"})
    assert message.startswith("could not start /bin/sh:")


async def test_invalid_arguments_are_error_results_naming_the_problem(
    tool_client: ToolClient,
) -> None:
    assert "'command' is a required property" in await tool_client.error("run_command", {})
    message = await tool_client.error("run_command", {"command": "true", "remote": "u@h"})
    assert "('remote' was unexpected)" in message
    message = await tool_client.error("run_command", {"command": "true", "timeout": 0})
    assert "at 'timeout'" in message
    assert "0 is less than or equal to the minimum of 0" in message
    message = await tool_client.error("run_command", {"command": "true", "timeout": "10"})
    assert "'10' is not of type 'number'" in message
    message = await tool_client.error("run_command", {"command": ""})
    assert "at 'command'" in message


async def test_tools_are_listed_with_closed_schemas(tool_client: ToolClient) -> None:
    names = {tool.name: tool for tool in tool_client.server.tools}
    assert set(names) == ORIGINAL_TOOL_NAMES
    for tool in names.values():
        assert tool.input_schema["additionalProperties"] is False, tool.name
        assert tool.description


# --- generate_password ------------------------------------------------------------------------


async def test_generate_password_defaults_and_options(tool_client: ToolClient) -> None:
    password = await tool_client.text("generate_password")
    assert len(password) == 15
    plain = await tool_client.text("generate_password", {"length": 40, "no_symbols": True})
    assert len(plain) == 40
    assert plain.isalnum()
    assert any(c.isdigit() for c in plain)
    assert any(c.isupper() for c in plain)
    message = await tool_client.error("generate_password", {"length": 0})
    assert "at 'length'" in message


def test_passwords_hold_every_character_class_and_differ() -> None:
    passwords = {generate_password(12) for _ in range(50)}
    assert len(passwords) == 50
    for password in passwords:
        assert any(not c.isalnum() for c in password)
        assert any(c.islower() for c in password)
        assert any(c.isupper() for c in password)


def test_password_characters_are_drawn_uniformly(monkeypatch: pytest.MonkeyPatch) -> None:
    # 85 characters: 256 = 3 * 85 + 1, so byte 255 would favour the first character; it is
    # drawn again instead, and every other byte maps to one character 3 times.
    alphabet = string.ascii_letters + string.digits + SYMBOLS
    assert len(alphabet) == 85
    draws = iter([bytes([255, 0, 85, 170, 84, 254, 255, 1]), bytes([255] * 8 + [2])])
    monkeypatch.setattr(secrets, "token_bytes", lambda count: next(draws))
    assert _uniform_choices(alphabet, 7) == alphabet[0] * 3 + alphabet[84] * 2 + alphabet[1:3]


@given(st.integers(min_value=1, max_value=256), st.integers(min_value=0, max_value=64))
def test_password_characters_come_from_the_alphabet(size: int, count: int) -> None:
    alphabet = "".join(chr(0x100 + index) for index in range(size))
    drawn = _uniform_choices(alphabet, count)
    assert len(drawn) == count
    assert set(drawn) <= set(alphabet)


def test_password_characters_pass_a_chi_square_test() -> None:
    # A generous bound (the 1 - 1e-9 quantile of chi-square with 84 degrees of freedom is
    # about 190): a modulo bias or a stuck byte would be far over it.
    alphabet = string.ascii_letters + string.digits + SYMBOLS
    counts = collections.Counter(_uniform_choices(alphabet, 85 * 2000))
    chi_square = sum((counts[c] - 2000) ** 2 / 2000 for c in alphabet)
    assert chi_square < 190
