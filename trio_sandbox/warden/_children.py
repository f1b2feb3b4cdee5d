"""Supervise children started by :mod:`._child_start` from Trio: wait on their pidfd, stop them
on cancel."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence

import attrs
import trio

from ..concurrency import stop_process_group
from ._child_start import LaunchedChild, launch
from ._pidfd import close_pidfd, wait_exited


@attrs.define(eq=False)
class Child:
    """A running child; `wait()` may be called from several places, one at a time."""

    launched: LaunchedChild

    @property
    def pid(self) -> int:
        return self.launched.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.launched.popen.returncode

    async def wait(self) -> int:
        if self.launched.popen.returncode is None:
            await wait_exited(self.launched.pidfd)
        return self.launched.popen.wait()

    def send_signal(self, signum: int) -> None:
        """Signal the child unless it is already reaped (then its pid may be reused)."""
        if self.launched.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def signal_group(self, signum: int) -> None:
        """Signal the child's whole process group (it leads its own session)."""
        if self.launched.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)


async def kill_group(child: Child) -> None:
    await stop_process_group(child, grace=0, first_signal=signal.SIGKILL)
    await child.wait()


async def supervise(
    launched: LaunchedChild, *, stop: Callable[[Child], Awaitable[object]] = kill_group
) -> int:
    """Return the child's exit status. On cancellation `stop` runs, shielded, and must leave
    the child exited; then Cancelled propagates."""
    child = Child(launched)
    popen = launched.popen
    try:
        try:
            return await child.wait()
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await stop(child)
                await child.wait()
            raise
    finally:
        if popen.returncode is None:  # stop() failed: do not leave anything running
            child.signal_group(signal.SIGKILL)
            child.send_signal(signal.SIGKILL)
            popen.wait()
        close_pidfd(launched.pidfd)


async def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    stop: Callable[[Child], Awaitable[object]] = kill_group,
    cwd: str | None = None,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    on_started: Callable[[], object] | None = None,
) -> int:
    """Start `argv` from this (the Trio) thread and supervise it."""
    launched = launch(argv, env=env, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr)
    if on_started is not None:
        on_started()
    return await supervise(launched, stop=stop)


async def reap_orphan(pidfd: int, *, within_seconds: float) -> None:
    """Wait for the process behind `pidfd` to exit and reap it if it became our child."""
    with trio.move_on_after(within_seconds):
        await wait_exited(pidfd)
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)  # noqa: ASYNC222 - exited
