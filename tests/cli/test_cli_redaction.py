"""Redaction for both kinds of user: ``trio-sandbox stdio`` as an MCP host launches it, driven by
the official SDK's stdio client. The client sees a placeholder; a command given it writes the
real value into the user's workspace, as the workspace's owner; ``--no-redact`` turns it off."""

from __future__ import annotations

from pathlib import Path

import mcp
import trio
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.cli.cli_harness import CHILD_LIMIT, run_cli, user_cli
from tests.support.sandbox_users import SandboxUser
from trio_sandbox.redact import PLACEHOLDER

GITHUB_TOKEN = "ghp_" + "R8x2Lq9ZkW3vN7pT1mY5cB4dF6hJ0sA2eG8u"


def text_of(result: mcp.types.CallToolResult) -> str:
    return "".join(b.text for b in result.content if isinstance(b, mcp.types.TextContent))


async def stdio_session(
    user: SandboxUser, workspace: Path, tmp_path: Path, *options: str
) -> tuple[str, str]:
    """Print the token in the sandbox, then hand back what the client saw; return both texts."""
    argv, env = user_cli(user, workspace, "stdio", "--volume", f"{workspace}:/work", *options)
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=workspace)
    with (tmp_path / "stderr").open("w+") as errlog, trio.fail_after(CHILD_LIMIT):
        async with mcp.Client(stdio_client(params, errlog=errlog)) as client:
            shown = text_of(await client.call_tool("run_command", {"command": "cat /work/.env"}))
            seen = shown.splitlines()[0].removeprefix("TOKEN=")
            command = f"printf %s '{seen}' > /work/copy; id -u"
            written = text_of(await client.call_tool("run_command", {"command": command}))
    return shown, written


async def test_the_client_sees_a_placeholder_and_the_workspace_gets_the_value(
    sandbox_user: SandboxUser, workspace: Path, tmp_path: Path
) -> None:
    env_file = workspace / ".env"
    env_file.write_text(f"TOKEN={GITHUB_TOKEN}\n")
    shown, written = await stdio_session(sandbox_user, workspace, tmp_path)
    assert GITHUB_TOKEN not in shown
    assert PLACEHOLDER.fullmatch(shown.splitlines()[0].removeprefix("TOKEN="))
    copy = workspace / "copy"
    assert copy.read_text() == GITHUB_TOKEN
    assert (copy.stat().st_uid, copy.stat().st_gid) == (sandbox_user.uid, sandbox_user.gid)
    assert written.splitlines()[0] == str(sandbox_user.uid)


async def test_no_redact_passes_secrets_through(
    sandbox_user: SandboxUser, workspace: Path, tmp_path: Path
) -> None:
    (workspace / ".env").write_text(f"TOKEN={GITHUB_TOKEN}\n")
    shown, _ = await stdio_session(sandbox_user, workspace, tmp_path, "--no-redact")
    assert shown.splitlines()[0] == f"TOKEN={GITHUB_TOKEN}"


async def test_config_keys_for_redaction_and_output_limits(tmp_path: Path) -> None:
    config = tmp_path / "sandbox.toml"
    config.write_text("redact = true\noutput_max_lines = 5\nsecret_env = []\n")
    done = await run_cli(
        ["call", "--config", str(config), "run_command", '{"command": "seq 1 10"}'],
        home=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    note, _, tail = done.stdout.partition("\n")
    assert note.startswith("[output shortened: 11 lines, 34 bytes; showing the last 5 lines"), note
    assert tail.splitlines() == ["7", "8", "9", "10", "[exit code 0]"]
    for bad, message in (
        ('redact = "yes"', "config key 'redact': expected true or false"),
        ("output_max_bytes = 0", "config key 'output_max_bytes': expected a positive"),
        ("secret_env = 'X'", "config key 'secret_env': expected a list of strings"),
    ):
        config.write_text(bad + "\n")
        done = await run_cli(
            ["call", "--config", str(config), "run_command", '{"command": "true"}'],
            home=tmp_path,
        )
        assert done.returncode == 2, done
        assert message in done.stderr, done.stderr
