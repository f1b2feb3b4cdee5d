"""Drive ``python -m trio_sandbox`` as a real child process, and look for what it leaves behind.

Every child gets its own session (so one signal reaches its whole process group) and a private
HOME / XDG_STATE_HOME, so no test writes into the real home directory.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import attrs
import pytest
import trio

from tests.support.sandbox_users import SandboxUser

CLI = [sys.executable, "-m", "trio_sandbox"]
# Real-time hang guard for one CLI child: a sandboxed call takes about 2 s on this machine.
CHILD_LIMIT = 30.0


@attrs.frozen
class Finished:
    returncode: int
    stdout: str
    stderr: str


def child_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRIO_SANDBOX", "XDG_"))}
    env["HOME"] = str(home)
    env["XDG_STATE_HOME"] = str(home / "state")
    return env


async def kill_group(process: trio.Process) -> None:
    """deliver_cancel: the whole process group, so nothing outlives a cancelled test."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def user_cli(user: SandboxUser, home: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of ``python -m trio_sandbox ARGS`` as ``user``."""
    env = user.env(
        {"HOME": str(home), "XDG_STATE_HOME": str(home / "state"), "TRIO_SANDBOX_LOG": "WARNING"}
    )
    return user.python_module("trio_sandbox", *args), env


async def run_cli(
    args: Sequence[str],
    *,
    home: Path,
    stdin: bytes = b"",
    limit: float = CHILD_LIMIT,
    user: SandboxUser | None = None,
) -> Finished:
    argv, env = (
        user_cli(user, home, *args) if user is not None else ([*CLI, *args], child_env(home))
    )
    with trio.fail_after(limit):
        done = await trio.run_process(
            argv,
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
            cwd=home,
            start_new_session=True,
            deliver_cancel=kill_group,
        )
    return Finished(done.returncode, done.stdout.decode(), done.stderr.decode())


def start_cli(
    args: Sequence[str],
    *,
    home: Path,
    user: SandboxUser | None = None,
    extra_env: Mapping[str, str] | None = None,
    **kwargs: object,
) -> Callable[..., Awaitable[object]]:
    """For ``nursery.start``: the child (as ``user``, when given) with piped stderr, the
    variables of ``extra_env`` (and whatever ``kwargs`` add)."""
    argv, env = [*CLI, *args], child_env(home)
    if user is not None:
        argv, env = user_cli(user, home, *args)
    env.update(extra_env or {})
    return functools.partial(
        trio.run_process,
        argv,
        check=False,
        stderr=subprocess.PIPE,
        env=env,
        cwd=home,
        start_new_session=True,
        deliver_cancel=kill_group,
        **kwargs,
    )


class RunningCli:
    """A CLI child whose stderr lines are collected as they arrive."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.ended = False
        self._changed = trio.Event()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def collect(self) -> None:
        assert self.process.stderr is not None
        pending = b""
        async for chunk in self.process.stderr:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            self.lines += [line.decode() for line in complete]
            self._wake()
        if pending:
            self.lines.append(pending.decode())
        self.ended = True
        self._wake()

    async def wait_for(self, pattern: str) -> re.Match[str]:
        """The first stderr line matching ``pattern``; fails if stderr ends without one."""
        while True:
            for line in self.lines:
                if found := re.search(pattern, line):
                    return found
            if self.ended:
                pytest.fail(f"no line matching {pattern!r} from the CLI:\n" + "\n".join(self.lines))
            await self._changed.wait()


# --- processes ---------------------------------------------------------------------------------


@attrs.frozen
class ProcessInfo:
    pid: int
    ppid: int
    pgid: int
    start_time: int  # clock ticks since boot: tells a reused pid from the original
    state: str
    comm: str


def read_process(pid: int) -> ProcessInfo | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm is in parentheses and may itself contain spaces or parentheses.
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    return ProcessInfo(
        pid=pid,
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        start_time=int(fields[19]),
        state=fields[0],
        comm=comm,
    )


def all_processes() -> list[ProcessInfo]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = read_process(int(entry))
            if info is not None:
                found.append(info)
    return found


def descendants(root: int) -> list[ProcessInfo]:
    """Every live process below ``root`` (not ``root`` itself), found by walking /proc."""
    children: dict[int, list[ProcessInfo]] = {}
    for info in all_processes():
        children.setdefault(info.ppid, []).append(info)
    found: list[ProcessInfo] = []
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child.pid)
    return found


def still_running(info: ProcessInfo) -> bool:
    """The same process (same start time) exists and is not a zombie awaiting its reaper."""
    now = read_process(info.pid)
    return now is not None and now.start_time == info.start_time and now.state != "Z"


async def wait_all_gone(processes: Sequence[ProcessInfo], limit: float = 3.0) -> list[ProcessInfo]:
    """What is still running after ``limit`` seconds (the kernel may lag a reap by a moment)."""
    left = list(processes)
    with trio.move_on_after(limit):
        while left:
            left = [info for info in left if still_running(info)]
            if left:
                await trio.sleep(0.05)
    return [info for info in left if still_running(info)]


# --- sockets -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def listening_on(port: int) -> bool:
    """Whether any socket on this host listens on ``port`` (state 0A in /proc/net/tcp*)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False
