"""``trio-sandbox stdio``: what an MCP host launches. The official SDK's stdio client drives it;
stdout must carry nothing but MCP, and closing stdin must end everything with exit status 0."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import mcp
import trio
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.cli.cli_harness import CHILD_LIMIT, descendants, start_cli, user_cli, wait_all_gone
from tests.support.sandbox_users import SandboxUser

# sh records its pid, runs the CLI as MCP hosts would, then records the CLI's exit status: the
# SDK kills the process tree when the server is not gone 2 s after stdin closes, and then no
# status gets written.
WRAPPER = 'echo $$ > "$2"; "$0" -m trio_sandbox stdio; echo $? > "$1"'


async def test_sdk_stdio_client_drives_the_cli(
    tmp_path: Path, sandbox_user: SandboxUser, workspace: Path
) -> None:
    """What an IDE does: launch `trio-sandbox stdio` as the user, speak MCP, close stdin."""
    status_file, pid_file = workspace / "status", workspace / "pid"
    argv = sandbox_user.command(
        "/bin/sh", "-c", WRAPPER, sandbox_user.python, str(status_file), str(pid_file)
    )
    _, env = user_cli(sandbox_user, workspace)
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=workspace)
    stray: list[object] = []

    async def on_message(message: Any) -> None:
        # Anything on stdout that is not an MCP message reaches the client as an exception.
        if isinstance(message, Exception):
            stray.append(message)

    with (tmp_path / "stderr").open("w+") as errlog, trio.fail_after(CHILD_LIMIT):
        async with mcp.Client(
            stdio_client(params, errlog=errlog), message_handler=on_message
        ) as client:
            listed = await client.list_tools()
            names = [tool.name for tool in listed.tools]
            assert len(names) == 11
            assert "run_command" in names
            result = await client.call_tool(
                "run_command", {"command": "id -u; touch /etc/x 2>&1; echo touch=$?"}
            )
            assert not result.is_error
            [text] = [
                item.text for item in result.content if isinstance(item, mcp.types.TextContent)
            ]
            assert text.splitlines() == [
                "65534" if sandbox_user.is_root else str(sandbox_user.uid),
                "touch: cannot touch '/etc/x': Read-only file system",
                "touch=1",
                "[exit code 0]",
            ]
            below = descendants(int(pid_file.read_text()))
        # Leaving the client closed stdin and waited for the process.
        errlog.seek(0)
        stderr = errlog.read()

    assert stray == []
    assert status_file.read_text().strip() == "0", stderr
    assert "bwrap" in [info.comm for info in below]
    assert await wait_all_gone(below) == []
    assert "serving 11 tools on stdio" in stderr
    assert "Traceback" not in stderr


def request(id_: int, method: str, params: dict[str, Any]) -> bytes:
    return (
        json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params}).encode()
        + b"\n"
    )


async def test_stdout_carries_only_mcp_and_eof_ends_the_process(tmp_path: Path) -> None:
    """Raw lines, so nothing is hidden by a client library: every stdout line is a JSON-RPC
    response, and closing stdin ends the process with status 0."""
    responses: list[dict[str, Any]] = []
    stderr = bytearray()
    with trio.fail_after(CHILD_LIMIT):
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                start_cli(["stdio"], home=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            )
            assert process.stdin is not None
            assert process.stdout is not None
            assert process.stderr is not None

            async def collect_stderr() -> None:
                assert process.stderr is not None
                async for chunk in process.stderr:
                    stderr.extend(chunk)

            nursery.start_soon(collect_stderr)
            buffer = b""

            async def next_line() -> bytes:
                nonlocal buffer
                assert process.stdout is not None
                while b"\n" not in buffer:
                    chunk = await process.stdout.receive_some()
                    if not chunk:
                        line, buffer = buffer, b""
                        return line
                    buffer += chunk
                line, _, buffer = buffer.partition(b"\n")
                return line

            await process.stdin.send_all(
                request(
                    1,
                    "initialize",
                    {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "cli-test", "version": "0"},
                    },
                )
            )
            responses.append(json.loads(await next_line()))
            await process.stdin.send_all(
                b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n'
                + request(2, "tools/list", {})
                + request(
                    3, "tools/call", {"name": "run_command", "arguments": {"command": "id -u"}}
                )
            )
            responses.append(json.loads(await next_line()))
            responses.append(json.loads(await next_line()))
            below = descendants(process.pid)
            await process.stdin.aclose()
            rest = []
            while line := await next_line():
                rest.append(line)
        # The nursery waited for the process.
    assert process.returncode == 0, stderr.decode()
    assert rest == [], "stdout carried something after the last response"
    assert all(message["jsonrpc"] == "2.0" for message in responses)
    assert sorted(message["id"] for message in responses) == [1, 2, 3]
    by_id = {message["id"]: message for message in responses}
    assert by_id[1]["result"]["protocolVersion"] == "2025-11-25"
    assert len(by_id[2]["result"]["tools"]) == 11
    assert by_id[3]["result"]["content"] == [{"type": "text", "text": "65534\n[exit code 0]"}]
    assert "bwrap" in [info.comm for info in below]
    assert await wait_all_gone(below) == []
