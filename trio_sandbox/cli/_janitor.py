"""Removing the client bundle even when this process is killed (SIGKILL, the OOM killer).

The bundle's private key must not stay on disk after the run it belongs to. An orderly exit
removes it in a ``finally``; for every other end a small child process does: ``sh`` waiting on a
pipe whose only writer is this process, so that the kernel closing that pipe at our death is its
cue. It runs in a session of its own, so that a signal to our process group does not stop it
before it did its job.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import trio

_SCRIPT = 'cat >/dev/null; rm -f -- "$@"; rmdir -- "$0" 2>/dev/null; exit 0'


async def _close_stdin(process: trio.Process) -> None:
    # Our own orderly stop: closing the pipe lets the janitor finish (the files are gone by then).
    if process.stdin is not None:
        await process.stdin.aclose()
    with trio.move_on_after(5):
        await process.wait()
        return
    process.kill()


async def serve_janitor(
    files: Sequence[Path],
    directory: Path,
    *,
    task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until cancelled; ``files`` (and ``directory``, if then empty) go when we do."""
    await trio.run_process(
        ["/bin/sh", "-c", _SCRIPT, str(directory), *map(str, files)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        check=False,
        deliver_cancel=_close_stdin,
        task_status=task_status,
    )
