"""The lifeline: when the host process dies in any way — SIGKILL included — its sandbox goes too:
the warden, bubblewrap, the tool server, every command, the published port and the proxy's, and
the client bundle ``run`` wrote. The same when the warden was started from a shell that exits,
and on podman the container is removed. Real children throughout; nothing here is timed (the
time it takes is in benchmarks/lifecycle.py)."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import trio

from tests.cli.cli_harness import (
    CHILD_LIMIT,
    RunningCli,
    descendants,
    free_port,
    listening_on,
    start_cli,
    wait_all_gone,
)
from tests.support.sandbox_users import SandboxUser

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
PODMAN_IMAGE = "localhost/trio-sandbox-test:latest"


def published_ports(pids: list[int]) -> list[int]:
    """The host ports the wardens among ``pids`` publish (their ``-p`` options)."""
    ports = []
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for flag, value in itertools.pairwise(argv):
            if flag == b"-p":
                ports.append(int(value.split(b":")[1]))
    return ports


def mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


@needs_bwrap
async def test_sigkill_of_run_leaves_nothing(sandbox_user: SandboxUser, workspace: Path) -> None:
    port = free_port()
    bundle = workspace / "bundle"
    mounts_before = mounts()
    args = ["run", "--listen", f"127.0.0.1:{port}", "--client-cert-dir", str(bundle)]
    # One sandbox (spares: tests/sandbox/test_sandbox_spares.py).
    args += ["--volume", f"{workspace}:/work", "--warm-spares", "0"]
    with trio.fail_after(CHILD_LIMIT):
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                start_cli(args, home=workspace, user=sandbox_user)
            )
            running = RunningCli(process)
            nursery.start_soon(running.collect)
            await running.wait_for("client certificate bundle")
            below = descendants(process.pid)
            names = [info.comm for info in below]
            assert "bwrap" in names, names
            ports = published_ports([info.pid for info in below])
            assert len(set(ports)) == 1, ports  # the warden's
            assert listening_on(port)
            assert listening_on(ports[0])
            assert sorted(os.listdir(bundle)) == ["ca.pem", "client.key", "client.pem"]
            os.kill(process.pid, signal.SIGKILL)  # only the host: no signal reaches the rest
    assert await wait_all_gone(below, limit=10) == []
    assert not listening_on(port)
    assert not listening_on(ports[0])
    assert not bundle.exists()
    assert mounts() == mounts_before


@needs_bwrap
async def test_a_warden_started_from_a_shell_that_exits_stops(
    sandbox_user: SandboxUser, tmp_path: Path
) -> None:
    marker = "7340003.1"
    warden = [sandbox_user.python, "-m", "trio_sandbox.warden", "wrap", "host", "--"]
    script = f'"$@" sleep {marker} & sleep 1; echo started $!'
    with trio.fail_after(CHILD_LIMIT):
        done = await trio.run_process(
            sandbox_user.command("/bin/sh", "-c", script, "sh", *warden),
            capture_stdout=True,
            check=True,
            env=sandbox_user.env(),
        )
    warden_pid = int(done.stdout.split()[-1])
    with trio.fail_after(CHILD_LIMIT):
        await wait_exit(warden_pid)
        for pid in _pids_with(marker):
            await wait_exit(pid)


async def wait_exit(pid: int) -> None:
    """Until ``pid`` has exited (its pidfd turns readable), without polling."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        trio.lowlevel.notify_closing(pidfd)
        os.close(pidfd)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def _pids_with(marker: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and not _zombie(int(name)):
            try:
                if marker.encode() in Path(f"/proc/{name}/cmdline").read_bytes():
                    found.append(int(name))
            except OSError:
                continue
    return found


def podman_ready() -> bool:
    if shutil.which("podman") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["podman", "image", "exists", PODMAN_IMAGE], check=False)
    return probe.returncode == 0


PARENT = """
import subprocess, sys, time
subprocess.Popen(sys.argv[1:])
time.sleep(3600)
"""


@pytest.mark.skipif(
    not podman_ready(), reason="needs podman and the test image (.ci/install-podman)"
)
async def test_sigkill_of_the_host_removes_the_podman_container() -> None:
    marker = "7340004.2"
    argv = [sys.executable, "-m", "trio_sandbox.warden", "wrap", "--backend", "podman"]
    argv += [PODMAN_IMAGE, "--", "sleep", marker]
    with trio.fail_after(CHILD_LIMIT):
        async with trio.open_nursery() as nursery:
            parent: trio.Process = await nursery.start(
                partial(trio.run_process, [sys.executable, "-c", PARENT, *argv], check=False)
            )
            # podman announces nothing: asking it again and again is the only way to know.
            while not _containers():  # noqa: ASYNC110
                await trio.sleep(0.1)
            parent.kill()
    with trio.fail_after(CHILD_LIMIT):
        while _containers():  # noqa: ASYNC110
            await trio.sleep(0.1)
        for pid in _pids_with(marker):
            await wait_exit(pid)


def _containers() -> list[str]:
    listed = subprocess.run(
        ["podman", "ps", "-a", "--filter", "name=trio-sandbox-", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return listed.stdout.split()
