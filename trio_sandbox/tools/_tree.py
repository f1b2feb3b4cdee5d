"""The processes a command started, found by parentage in /proc, and killed without a race.

Process groups and sessions do not hold a command's processes: ``setsid``, ``setsid -f``,
``nohup cmd &`` and double forks leave them. Parentage does, once the right process is a child
subreaper (PR_SET_CHILD_SUBREAPER): every orphan is re-parented to its nearest subreaper
ancestor instead of PID 1. Each command runs under a keeper shell that is one, so everything the
command starts stays a descendant of the keeper while the keeper lives; and the tool server is one
itself, so what a finished command left running stays a descendant of the tool server.

Killing a tree: every member is stopped (SIGSTOP cannot be caught, and a stopped process
neither forks nor exits) and the tree is scanned again until a scan finds nothing new; then all
of it is killed. A fork bomb cannot outrun this: each round stops every process the previous
round saw, and only processes that were running can add new ones.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
from collections.abc import Callable, Collection, Iterable
from typing import Any

import trio

from ..concurrency import descendants, process_table

_PR_SET_CHILD_SUBREAPER = 36
# Stopped (by a signal or a tracer), dead, or a zombie: none of these can start a process.
_INERT_STATES = frozenset("tTZXx")
# How long one round waits for its SIGSTOPs to take effect (a process in uninterruptible sleep
# stops when it wakes); a round that times out goes on, and the next scan sees what it missed.
_STOP_WAIT = 1.0
_POLL = 0.002


@functools.cache
def load_prctl() -> Any:
    """prctl(2) from the C library, looked up once: between fork and exec a lookup could wait
    on a lock that another thread of the parent held when it forked."""
    function = ctypes.CDLL(None, use_errno=True).prctl
    function.restype = ctypes.c_int
    return function


def become_subreaper() -> None:
    """Make the calling process a child subreaper; kept across execve, not inherited by fork.

    Safe between fork and exec (``preexec_fn``) once :func:`load_prctl` has run in the parent.
    """
    one, zero = ctypes.c_ulong(1), ctypes.c_ulong(0)
    if load_prctl()(_PR_SET_CHILD_SUBREAPER, one, zero, zero, zero) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"PR_SET_CHILD_SUBREAPER: {os.strerror(number)}")


async def poll_until(done: Callable[[], bool], interval: float = _POLL) -> None:
    """Wait until ``done()`` holds: /proc has no event for a process stopping or dying."""
    while not done():  # noqa: ASYNC110 - nothing to wait on but /proc
        await trio.sleep(interval)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


async def kill_tree(members: Callable[[dict[int, tuple[int, str]]], Collection[int]]) -> int:
    """Stop, then kill, every process ``members`` picks from a fresh process table each round;
    returns how many were killed.

    ``members`` must keep returning the stopped ones too (it picks by parentage, and stopped
    processes keep their place in the tree), so that nothing is lost between rounds.
    """
    stopped: set[int] = set()
    while True:
        table = process_table()
        new = [
            pid
            for pid in members(table)
            if pid not in stopped and table.get(pid, (0, "X"))[1] not in "ZXx"
        ]
        if not new:
            break
        for pid in new:
            _signal(pid, signal.SIGSTOP)
            stopped.add(pid)
        with trio.move_on_after(_STOP_WAIT):
            await poll_until(functools.partial(_all_inert, new))
    for pid in stopped:
        _signal(pid, signal.SIGKILL)
    return len(stopped)


def _all_inert(pids: Iterable[int]) -> bool:
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue
        if chr(stat[stat.rfind(b")") + 2]) not in _INERT_STATES:
            return False
    return True


async def kill_process_tree(root: int) -> int:
    """Stop and kill ``root`` and everything below it; see the module's docstring."""

    def members(table: dict[int, tuple[int, str]]) -> list[int]:
        return [root, *descendants([root], table)] if root in table else []

    return await kill_tree(members)


def signal_descendants(root: int, signum: int) -> None:
    """Send ``signum`` to everything below ``root`` (not to ``root``)."""
    for pid in descendants([root], process_table()):
        _signal(pid, signum)
