"""The warden's one pidfd wait: a process's exit seen without polling, whoever its parent is."""

from __future__ import annotations

import os
import sys

import trio

from trio_sandbox.warden._pidfd import close_pidfd, has_exited, wait_exited, wait_pid_exited


async def test_wait_exited_returns_once_the_process_exits() -> None:
    child = await trio.lowlevel.open_process([sys.executable, "-c", "import time; time.sleep(0.2)"])
    pidfd = os.pidfd_open(child.pid)
    try:
        assert not has_exited(pidfd)
        with trio.fail_after(10):
            await wait_exited(pidfd)
        assert has_exited(pidfd)
        assert await child.wait() == 0  # waiting did not reap: the status is still there
    finally:
        close_pidfd(pidfd)


async def test_wait_pid_exited_by_pid() -> None:
    child = await trio.lowlevel.open_process([sys.executable, "-c", "pass"])
    with trio.fail_after(10):
        await wait_pid_exited(child.pid)
    assert await child.wait() == 0


async def test_closing_wakes_a_waiter() -> None:
    child = await trio.lowlevel.open_process([sys.executable, "-c", "import time; time.sleep(30)"])
    pidfd = os.pidfd_open(child.pid)
    try:
        async with trio.open_nursery() as nursery:
            woken: list[type[BaseException]] = []

            async def waiter() -> None:
                try:
                    await wait_exited(pidfd)
                except trio.ClosedResourceError as error:
                    woken.append(type(error))

            nursery.start_soon(waiter)
            await trio.sleep(0.05)
            close_pidfd(pidfd)
        assert woken == [trio.ClosedResourceError]
    finally:
        child.kill()
        await child.wait()
