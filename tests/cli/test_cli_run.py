"""``trio-sandbox run``: start-up stages on stderr, ``status`` while it runs, and Ctrl-C leaves
nothing behind (no process, no listening socket, no bundle, no bwrap), with exit status 0."""

from __future__ import annotations

import json
import os
import signal
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from tests.cli.cli_harness import (
    CHILD_LIMIT,
    Finished,
    ProcessInfo,
    RunningCli,
    all_processes,
    descendants,
    free_port,
    listening_on,
    run_cli,
    start_cli,
    wait_all_gone,
)

STAGES = [
    "client identity ready",
    "warden started",
    "tool server ready",
    "sandbox ready",
    "proxy listening at",
]
TOKEN = "a-bearer-token-for-the-cli-tests"


Interact = Callable[[RunningCli, str], Awaitable[None]]


async def run_then_interrupt(
    tmp_path: Path, extra: list[str], interact: Interact, *, signal_group: bool
) -> tuple[RunningCli, list[ProcessInfo], int]:
    """Start ``run``, wait for the proxy, ``interact``, send SIGINT, wait for the exit."""
    port = free_port()
    with trio.fail_after(CHILD_LIMIT):
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                start_cli(["run", "--listen", f"127.0.0.1:{port}", *extra], home=tmp_path)
            )
            running = RunningCli(process)
            nursery.start_soon(running.collect)
            url = (await running.wait_for(r"proxy listening at (\S+)"))[1]
            assert url == f"https://127.0.0.1:{port}/mcp"
            assert listening_on(port)
            await interact(running, url)
            below = descendants(process.pid)
            if signal_group:
                os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
            else:
                os.kill(process.pid, signal.SIGINT)
        # The nursery waited for the child and the end of its stderr.
    assert process.returncode is not None
    return running, below, port


def assert_nothing_left(running: RunningCli, below: list[ProcessInfo], port: int) -> None:
    assert running.process.returncode == 0, "\n".join(running.lines)
    assert "bwrap" in [info.comm for info in below], below
    assert not listening_on(port)
    # Orphans would keep the process group of the run process (its session leader).
    assert [info for info in all_processes() if info.pgid == running.process.pid] == []
    assert "Traceback" not in "\n".join(running.lines)
    assert running.lines[-2:] == ["trio-sandbox: SIGINT: shutting down", "trio-sandbox: stopped"]


@pytest.mark.parametrize("signal_group", [True, False], ids=["ctrl-c-group", "kill-int-pid"])
async def test_run_mutual_tls_status_and_ctrl_c_leave_nothing(
    tmp_path: Path, signal_group: bool
) -> None:
    bundle = tmp_path / "bundle"
    statuses = []

    async def interact(running: RunningCli, url: str) -> None:
        await running.wait_for("client certificate bundle")
        names = sorted(os.listdir(bundle))
        assert names == ["ca.pem", "client.key", "client.pem"]
        assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
        for name in names:
            assert stat.S_IMODE((bundle / name).stat().st_mode) == 0o600
        statuses.append(
            await run_cli(["status", "--url", url, "--client-cert-dir", str(bundle)], home=tmp_path)
        )

    running, below, port = await run_then_interrupt(
        tmp_path, ["--client-cert-dir", str(bundle)], interact, signal_group=signal_group
    )

    [status] = statuses
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["health"]["healthy"] is True
    assert report["proxy_url"] == f"https://127.0.0.1:{port}/mcp"
    assert [upstream["tools"] for upstream in report["upstreams"]] == [11]

    positions = []
    for stage in STAGES:
        matching = [i for i, line in enumerate(running.lines) if stage in line]
        assert matching, f"no stage line {stage!r} in:\n" + "\n".join(running.lines)
        positions.append(matching[0])
    assert positions == sorted(positions), running.lines

    assert await wait_all_gone(below) == []
    assert_nothing_left(running, below, port)
    assert not bundle.exists()


async def test_run_token_face_status_with_right_and_wrong_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    wrong_file = tmp_path / "wrong"
    wrong_file.write_text("not-the-token-at-all-but-long-enough\n")
    results: dict[str, Finished] = {}
    written_ca: list[trio.Path] = []

    async def interact(running: RunningCli, url: str) -> None:
        ca = trio.Path((await running.wait_for(r"and trust (\S+)"))[1])
        assert (await ca.read_text()).startswith("-----BEGIN CERTIFICATE-----")
        written_ca.append(ca)
        for name, file in (("right", token_file), ("wrong", wrong_file)):
            results[name] = await run_cli(
                ["status", "--url", url, "--token-file", str(file), "--ca", str(ca)],
                home=tmp_path,
            )

    running, below, port = await run_then_interrupt(
        tmp_path, ["--token-file", str(token_file)], interact, signal_group=True
    )

    right, wrong = results["right"], results["wrong"]
    assert right.returncode == 0, right.stderr
    assert json.loads(right.stdout)["health"]["healthy"] is True
    assert wrong.returncode == 1
    assert wrong.stdout == ""
    assert "missing or wrong bearer token" in wrong.stderr
    assert TOKEN not in "\n".join(running.lines)

    assert await wait_all_gone(below) == []
    assert_nothing_left(running, below, port)
    assert not await written_ca[0].exists()  # the CA file written for token clients goes too


async def test_status_of_nothing_listening_exits_1(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    done = await run_cli(
        [
            "status",
            "--url",
            f"https://127.0.0.1:{free_port()}/mcp",
            "--token-file",
            str(token_file),
        ],
        home=tmp_path,
    )
    assert done.returncode == 1
    assert "cannot read the status" in done.stderr
    assert "Traceback" not in done.stderr
