"""Start child processes synchronously, from the thread that will outlive them.

`trio.run_process` forks from a worker thread. PR_SET_PDEATHSIG (bwrap's --die-with-parent)
fires when the *thread* that forked the child exits, and Trio retires idle worker threads
after 10 s: measured here, a bwrap started through `trio.run_process` was SIGKILLed 10.0 s
later. Forking from the main thread keeps the parent-death signal tied to the warden's
life. This module needs only the standard library, so the warden can start bubblewrap
before it pays for importing Trio (the sandbox boots while the warden's imports run).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

_PR_SET_CHILD_SUBREAPER = 36


@dataclass(eq=False, slots=True)
class LaunchedChild:
    """A started child and a pidfd to await its exit without polling."""

    popen: subprocess.Popen[bytes]
    pidfd: int


def launch(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    pass_fds: Sequence[int] = (),
    cwd: str | None = None,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    preexec: Callable[[], None] | None = None,
) -> LaunchedChild:
    """Start `argv` in a new session; stdin/stdout/stderr are inherited unless given, so the
    command's output reaches the warden's caller unchanged. ``preexec`` runs in the child before
    exec (safe only before Trio, while no thread of the warden's can hold a lock the child needs:
    bubblewrap's start; a thread an at-fork handler starts in the child does not matter)."""
    popen = subprocess.Popen(
        list(argv),
        preexec_fn=preexec,
        env=dict(env),
        pass_fds=tuple(pass_fds),
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        close_fds=True,
    )
    return LaunchedChild(popen, os.pidfd_open(popen.pid))


def become_subreaper() -> None:
    """Orphaned descendants (bwrap's init outlives bwrap by a moment) get reparented to us
    instead of the host's PID 1, so the warden can reap them before it exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
