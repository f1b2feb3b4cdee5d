"""Stopping a child and everything it started: the one process-group stopper.

Children run in their own session (``start_new_session=True``), so the leader's pid is the group
id. A stop asks first (SIGTERM, or SIGINT where a contract says so), gives the leader a grace
period, then SIGKILLs the whole group — always, even when the leader exited at once, since a
grandchild that ignores the first signal must not outlive it. The group id cannot be reused while
any member lives, so the late SIGKILL cannot hit a stranger.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio


class GroupLeader(Protocol):
    """A child that leads its own process group: ``trio.Process``, or the warden's pidfd child."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    async def wait(self) -> int: ...


def signal_process_group(pgid: int, signum: int) -> None:
    """Signal a whole group; a group that is gone already (or not ours) is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def stop_process_group(
    process: GroupLeader,
    *,
    grace: float,
    first_signal: int = signal.SIGTERM,
    leader_only: bool = False,
) -> None:
    """Send ``first_signal`` (to the leader alone with ``leader_only``, else to the group), wait up
    to ``grace`` seconds for the leader, then SIGKILL the group.

    Also safe as ``trio.run_process``'s ``deliver_cancel``: Trio cancels that as soon as the
    leader exits, which is why the SIGKILL sits in ``finally``.
    """
    try:
        if process.returncode is None:
            if leader_only:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(first_signal)
            else:
                signal_process_group(process.pid, first_signal)
            with trio.move_on_after(grace):
                await process.wait()
    finally:
        signal_process_group(process.pid, signal.SIGKILL)


def stopping_process_group(
    *, grace: float, first_signal: int = signal.SIGTERM, leader_only: bool = False
) -> Callable[[GroupLeader], Awaitable[None]]:
    """:func:`stop_process_group` with its options bound, for ``deliver_cancel=``."""

    async def deliver_cancel(process: GroupLeader) -> None:
        await stop_process_group(
            process, grace=grace, first_signal=first_signal, leader_only=leader_only
        )

    return deliver_cancel
