"""Running one shell command in its own process group, and killing the whole group."""

from __future__ import annotations

import functools
import math
import os
import signal
import subprocess
from pathlib import Path

import attrs
import trio

from ..concurrency import stopping_process_group
from ._output import TailBuffer
from ._sandbox_limits import NO_SANDBOX_LIMITS, SandboxLimits

SHELL = "/bin/sh"
_READ_CHUNK = 65_536


class SpawnError(Exception):
    """The shell could not be started at all (missing working directory, no /bin/sh...)."""


@attrs.frozen
class ShellExit:
    """How a command ended: its return code (negative: killed by that signal) or a timeout."""

    returncode: int | None
    timed_out: bool = False
    # The sandbox reached this limit while the command ran (e.g. "memory limit 256 MiB") and
    # the kernel killed ``limit_kills`` of its processes.
    limit_reached: str | None = None
    limit_kills: int = 0

    def describe(self) -> str:
        if self.timed_out:
            return "timed out; its process group was killed"
        assert self.returncode is not None
        killed = self.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)
        if self.limit_reached is not None and killed:
            return f"killed: {self.limit_reached} reached"
        if self.returncode < 0:
            ended = f"killed by signal {_signal_name(-self.returncode)}"
        else:
            ended = f"exit code {self.returncode}"
        if self.limit_reached is not None:
            ended += f"; {self.limit_reached} reached: {self.limit_kills} process(es) killed"
        return ended


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


async def _pump(
    stream: trio.lowlevel.FdStream, output: TailBuffer, scope: trio.CancelScope
) -> None:
    with scope:
        while chunk := await stream.receive_some(_READ_CHUNK):
            output.feed(chunk)


async def run_shell(
    command: str,
    *,
    cwd: Path,
    output: TailBuffer,
    time_limit: float | None = None,
    kill_grace: float = 2.0,
    output_drain: float = 0.25,
    sandbox: SandboxLimits = NO_SANDBOX_LIMITS,
) -> ShellExit:
    """Run ``sh -c command`` with stdin from /dev/null, feeding stdout and stderr into ``output``.

    On timeout or cancellation the whole process group is terminated before this returns (or
    re-raises Cancelled). After a normal exit, background children the command left behind are
    not killed (a command may start a daemon on purpose), but their output is no longer read.
    """
    oom_before = sandbox.oom_kills()
    read_fd, write_fd = os.pipe()
    stream = trio.lowlevel.FdStream(read_fd)
    spawn_error: OSError | None = None
    returncode: int | None = None
    try:
        with trio.move_on_after(math.inf if time_limit is None else time_limit) as deadline:
            async with trio.open_nursery() as nursery:
                try:
                    process: trio.Process = await nursery.start(
                        functools.partial(
                            trio.run_process,
                            # The wrapper runs ``command`` as `sh -c command` would, with
                            # the command's OOM score and limits set first.
                            [SHELL, "-c", sandbox.shell_wrapper(), SHELL, command],
                            stdin=subprocess.DEVNULL,
                            stdout=write_fd,
                            stderr=write_fd,
                            cwd=os.fspath(cwd),
                            start_new_session=True,
                            check=False,
                            deliver_cancel=stopping_process_group(grace=kill_grace),
                        )
                    )
                except OSError as exc:
                    spawn_error = exc
                finally:
                    # Only the child may hold the write end, or EOF would never come.
                    os.close(write_fd)
                if spawn_error is None:
                    reader_scope = trio.CancelScope()
                    nursery.start_soon(_pump, stream, output, reader_scope)
                    returncode = await process.wait()
                    reader_scope.deadline = trio.current_time() + output_drain
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()
    if spawn_error is not None:
        raise SpawnError(f"could not start {SHELL}: {spawn_error}") from spawn_error
    if returncode is None and deadline.cancelled_caught:
        return ShellExit(None, timed_out=True)
    if oom_before is not None:
        oom_after = sandbox.oom_kills()
        if oom_after is not None and oom_after > oom_before:
            # Another command running at the same time may have been the one killed: the count
            # is the sandbox's; it only says the limit was reached while this one ran.
            return ShellExit(
                returncode,
                limit_reached=sandbox.describe_memory(),
                limit_kills=oom_after - oom_before,
            )
    return ShellExit(returncode)
