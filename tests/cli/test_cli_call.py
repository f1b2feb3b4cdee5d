"""``trio-sandbox call`` and ``trio-sandbox tools``: one real bubblewrap sandbox per command."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from tests.cli.cli_harness import run_cli
from tests.support.sandbox_users import SandboxUser

TOOL_COUNT = 11


async def test_call_runs_inside_bubblewrap_and_cannot_write_etc(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    """As root and as an ordinary user, with defaults: the call runs in bubblewrap (PID 1 of its
    own namespace), cannot write /etc, and writes the workspace as the workspace's owner."""
    marker = trio.Path("/etc/trio-sandbox-cli-test")
    assert not await marker.exists()
    done = await run_cli(
        [
            "call",
            "--volume",
            f"{workspace}:/work",
            "run_command",
            json.dumps(
                {
                    "command": f"id -u; touch {marker}; echo touch=$?;"
                    " grep -c bwrap /proc/1/cmdline; echo made > /work/made.txt"
                }
            ),
        ],
        home=workspace,
        user=sandbox_user,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == str(sandbox_user.uid)
    assert f"touch: cannot touch '{marker}': Read-only file system" in lines
    assert "touch=1" in lines
    # PID 1 of the sandbox's own pid namespace is bubblewrap.
    assert lines[lines.index("touch=1") + 1] == "1"
    assert lines[-1] == "[exit code 0]"
    assert not await marker.exists()
    made = workspace / "made.txt"
    assert (made.stat().st_uid, made.stat().st_gid) == (sandbox_user.uid, sandbox_user.gid)
    assert "Traceback" not in done.stderr


async def test_call_json_has_the_mcp_result_shape(tmp_path: Path) -> None:
    done = await run_cli(
        ["call", "--json", "run_command", '{"command": "echo hello from the sandbox"}'],
        home=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["content"] == [{"type": "text", "text": "hello from the sandbox\n[exit code 0]"}]
    assert result.get("isError", False) is False


async def test_call_exits_1_when_the_tool_reports_an_error(tmp_path: Path) -> None:
    done = await run_cli(
        ["call", "--json", "run_command", '{"command": "true", "no_such_argument": 1}'],
        home=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["isError"] is True
    [item] = result["content"]
    assert item["type"] == "text"
    assert "no_such_argument" in item["text"]
    assert "Traceback" not in done.stderr


async def test_call_unknown_tool_exits_1_with_a_message(tmp_path: Path) -> None:
    done = await run_cli(["call", "no_such_tool"], home=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "unknown tool: 'no_such_tool'" in done.stderr
    assert "Traceback" not in done.stderr


async def test_tools_lists_names_and_first_description_lines(tmp_path: Path) -> None:
    listed = await run_cli(["tools", "--json"], home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    tools = json.loads(listed.stdout)
    assert len(tools) == TOOL_COUNT
    for tool in tools:
        assert isinstance(tool["name"], str)
        assert tool["inputSchema"]["type"] == "object"
    assert {"run_command", "run_command_task", "view", "create", "str_replace"} <= {
        tool["name"] for tool in tools
    }

    table = await run_cli(["tools"], home=tmp_path)
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()
    assert len(rows) == TOOL_COUNT
    expected = {tool["name"]: tool["description"].strip().splitlines()[0] for tool in tools}
    for row in rows:
        name, _, summary = row.partition(" ")
        assert summary.strip() == expected[name]
    assert [row.partition(" ")[0] for row in rows] == [tool["name"] for tool in tools]
