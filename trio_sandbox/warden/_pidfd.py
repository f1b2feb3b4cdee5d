"""The one way the warden's Trio side waits for a process: its pidfd (Linux 5.3+), which polls
readable once the process has exited, whoever its parent is (no SIGCHLD, no polling loop)."""

from __future__ import annotations

import os
import select

import trio


def has_exited(pidfd: int) -> bool:
    """Whether the process behind ``pidfd`` has exited already (does not block)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


async def wait_exited(pidfd: int) -> None:
    """Return once the process behind ``pidfd`` has exited (it is not reaped)."""
    await trio.lowlevel.wait_readable(pidfd)


def close_pidfd(pidfd: int) -> None:
    """Close a pidfd that a task may still be waiting on (that task gets ClosedResourceError)."""
    trio.lowlevel.notify_closing(pidfd)
    os.close(pidfd)


async def wait_pid_exited(pid: int) -> None:
    """Return once process ``pid`` has exited (ProcessLookupError: it is gone already)."""
    pidfd = os.pidfd_open(pid)
    try:
        await wait_exited(pidfd)
    finally:
        close_pidfd(pidfd)
