"""SIGINT or SIGTERM at every logged moment of a command's life — before, during and after its
start — stops everything it started and exits 0. Real children: the CLI, the warden, bubblewrap,
the tool server; a fake warden that hangs before its CA block for the case where a start never
ends on its own."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.cli.cli_harness import (
    CHILD_LIMIT,
    ProcessInfo,
    RunningCli,
    descendants,
    free_port,
    listening_on,
    start_cli,
    wait_all_gone,
)

FAKE_WARDEN = Path(__file__).parents[1] / "sandbox" / "fake_warden.py"

# (the line to wait for, the signal to send then): every stage of a start, and after it.
RUN_MOMENTS = [
    ("starting the sandbox", signal.SIGINT),
    ("client identity ready", signal.SIGTERM),
    ("waiting for its CA block", signal.SIGINT),
    ("warden started", signal.SIGINT),
    ("tool server ready", signal.SIGTERM),
    ("sandbox ready", signal.SIGINT),
    ("proxy listening at", signal.SIGTERM),
]
STDIO_MOMENTS = [
    ("client identity ready", signal.SIGINT),
    ("warden started", signal.SIGTERM),
    ("serving 11 tools on stdio", signal.SIGINT),
]
CALL_MOMENTS = [
    ("client identity ready", signal.SIGTERM),
    ("tool server ready", signal.SIGINT),
    # After start-up, while the tool runs: the call is cancelled with its sandbox.
    ("calling run_command", signal.SIGTERM),
]


async def signal_at(
    tmp_path: Path, args: list[str], moment: str, signum: int, *, stdin: bool = False
) -> tuple[RunningCli, list[ProcessInfo]]:
    """Start the CLI, send ``signum`` once ``moment`` is on its stderr, wait for its exit."""
    running: RunningCli | None = None
    try:
        with trio.fail_after(CHILD_LIMIT):
            async with trio.open_nursery() as nursery:
                child = (
                    start_cli(args, home=tmp_path, stdin=subprocess.PIPE)  # stays open (stdio)
                    if stdin
                    else start_cli(args, home=tmp_path)
                )
                process: trio.Process = await nursery.start(child)
                running = RunningCli(process)
                nursery.start_soon(running.collect)
                await running.wait_for(moment)
                below = descendants(process.pid)
                process.send_signal(signum)
    except trio.TooSlowError:
        lines = "\n".join(running.lines) if running is not None else ""
        pytest.fail(f"the CLI did not stop after {signal.Signals(signum).name}:\n{lines}")
    return running, below


def assert_clean_exit(running: RunningCli, below: list[ProcessInfo], signum: int) -> None:
    output = "\n".join(running.lines)
    assert running.process.returncode == 0, output
    assert "Traceback" not in output
    assert f"{signal.Signals(signum).name}: shutting down" in output


@pytest.mark.parametrize(("moment", "signum"), RUN_MOMENTS, ids=[m for m, _ in RUN_MOMENTS])
async def test_run_stops_at_every_moment(tmp_path: Path, moment: str, signum: int) -> None:
    port = free_port()
    running, below = await signal_at(
        tmp_path, ["run", "--listen", f"127.0.0.1:{port}"], moment, signum
    )
    assert_clean_exit(running, below, signum)
    assert running.lines[-1] == "trio-sandbox: stopped"
    assert await wait_all_gone(below) == []
    assert not listening_on(port)


@pytest.mark.parametrize(("moment", "signum"), STDIO_MOMENTS, ids=[m for m, _ in STDIO_MOMENTS])
async def test_stdio_stops_at_every_moment(tmp_path: Path, moment: str, signum: int) -> None:
    running, below = await signal_at(tmp_path, ["stdio"], moment, signum, stdin=True)
    assert_clean_exit(running, below, signum)
    assert await wait_all_gone(below) == []


@pytest.mark.parametrize(("moment", "signum"), CALL_MOMENTS, ids=[m for m, _ in CALL_MOMENTS])
async def test_call_stops_at_every_moment(tmp_path: Path, moment: str, signum: int) -> None:
    args = ["call", "run_command", '{"command": "sleep 600"}']
    running, below = await signal_at(tmp_path, args, moment, signum)
    assert_clean_exit(running, below, signum)
    assert await wait_all_gone(below) == []


async def test_a_start_that_hangs_is_stopped_by_a_signal(tmp_path: Path) -> None:
    """The warden never prints its CA block (the 60 s deadline is far away): Ctrl-C must not
    wait for it, and the warden is stopped (SIGINT, then SIGKILL after stop_grace)."""
    config = tmp_path / "hang.toml"
    config.write_text(
        f"warden = [{sys.executable!r}, {str(FAKE_WARDEN)!r}, 'silent']\nstop_grace = 1\n"
    )
    running, below = await signal_at(
        tmp_path, ["run", "--config", str(config)], "waiting for its CA block", signal.SIGINT
    )
    assert_clean_exit(running, below, signal.SIGINT)
    assert [info.comm for info in below] == ["python"]  # the fake warden, which would wait on
    assert await wait_all_gone(below) == []


async def test_proxy_stops_while_an_upstream_hangs_in_its_handshake(tmp_path: Path) -> None:
    """An upstream that never answers initialize: the proxy is still starting when the signal
    comes, and stops at once with its stdio child."""
    config = tmp_path / "servers.toml"
    config.write_text('[mcpServers.stuck]\ncommand = "sleep"\nargs = ["600"]\n')
    running, below = await signal_at(
        tmp_path,
        ["proxy", "--plain-http", "--config", str(config)],
        "connecting to 1 upstream",
        signal.SIGTERM,
    )
    output = "\n".join(running.lines)
    assert running.process.returncode == 0, output
    assert "SIGTERM: shutting down" in output
    assert "Traceback" not in output
    assert await wait_all_gone(below) == []
