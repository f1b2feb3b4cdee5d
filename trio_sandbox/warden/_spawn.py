"""Child processes forked from the Trio thread itself, awaited through a pidfd.

`trio.run_process` forks from a worker thread. PR_SET_PDEATHSIG (bwrap's --die-with-parent)
fires when the *thread* that forked the child exits, and Trio retires idle worker threads
after 10 s: measured here, a bwrap started through `trio.run_process` was SIGKILLed 10.0 s
later. Forking from the thread that runs `trio.run` keeps the parent-death signal tied to the
warden's life. Fork+exec takes about a millisecond, so blocking the event loop for it is fine.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence

import attrs
import trio

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphaned descendants (bwrap's init outlives bwrap by a moment) get reparented to us
    instead of the host's PID 1, so the warden can reap them before it exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


async def reap_orphan(pidfd: int, *, within_seconds: float) -> None:
    """Wait for the process behind `pidfd` to exit and reap it if it became our child."""
    with trio.move_on_after(within_seconds):
        await trio.lowlevel.wait_readable(pidfd)
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)  # noqa: ASYNC222 - exited


@attrs.define(eq=False)
class Child:
    """A running child; `wait()` may be called from several places, one at a time."""

    popen: subprocess.Popen[bytes]
    _pidfd: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    async def wait(self) -> int:
        if self.popen.returncode is None:
            await trio.lowlevel.wait_readable(self._pidfd)
        return self.popen.wait()

    def send_signal(self, signum: int) -> None:
        """Signal the child unless it is already reaped (then its pid may be reused)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signum)

    def signal_group(self, signum: int) -> None:
        """Signal the child's whole process group (it leads its own session)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signum)


async def kill_group(child: Child) -> None:
    child.signal_group(signal.SIGKILL)
    await child.wait()


async def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    stop: Callable[[Child], Awaitable[object]] = kill_group,
    pass_fds: Sequence[int] = (),
    cwd: str | None = None,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    on_started: Callable[[Child], object] | None = None,
) -> int:
    """Run `argv` in a new session, by default with stdin/stdout/stderr inherited (so the
    command's output reaches our caller unchanged), and return its exit status. On
    cancellation `stop` runs, shielded, and must leave the child exited; then Cancelled
    propagates."""
    popen = subprocess.Popen(  # noqa: ASYNC220 - forked from this thread on purpose, see top
        list(argv),
        env=dict(env),
        pass_fds=tuple(pass_fds),
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        close_fds=True,
    )
    pidfd = os.pidfd_open(popen.pid)
    child = Child(popen, pidfd)
    try:
        if on_started is not None:
            on_started(child)
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
        trio.lowlevel.notify_closing(pidfd)
        os.close(pidfd)
