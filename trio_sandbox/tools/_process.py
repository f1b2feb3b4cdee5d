"""Running one shell command under a keeper, and killing everything it started.

Each command runs as ``/bin/sh SCRIPT`` under a keeper: a small ``sh`` that is a child subreaper
(set between fork and exec), so every process the command starts stays below it, whatever it does
to its session or process group (see ``_tree``). The script reaches the shell through a memfd,
not argv, so its size is bounded by :attr:`ToolLimits.max_command_bytes`, not by the kernel's
128 KiB per argument.

What a command leaves running when it ends normally (``server &``) keeps running: it is the
tool server's (itself a subreaper) until a spawn finds the process limit reached; then those
leftovers are killed and the spawn is tried once more (:meth:`CommandProcesses.spawn`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import resource
import signal
from collections.abc import Collection
from pathlib import Path

import attrs
import trio

from ..concurrency import (
    AsyncValue,
    descendants,
    memfd_holding,
    process_table,
    signal_process_group,
    single_error,
)
from ..contract import LimitsInForce
from ._errors import SpawnError
from ._output import TailBuffer
from ._sandbox_limits import (
    NO_LIMITS_SAID,
    describe_memory,
    describe_processes,
    keeper_script,
    oom_kills,
)
from ._tree import (
    become_subreaper,
    kill_process_tree,
    kill_tree,
    load_prctl,
    poll_until,
    signal_descendants,
)

SHELL = "/bin/sh"
_READ_CHUNK = 65_536
# The keeper's script, after the sandbox's steps (_sandbox_limits.keeper_script). The shell's
# stderr is set in a subshell, so that the keeper's own "Killed" goes to /dev/null. The keeper
# waits for the shell and passes its status on; a shell killed by a terminating signal is killed
# by it again, so that the caller sees the signal and not 128+N (core dumps off: the working
# directory is the user's). A shell cannot tell `exit 137` from a SIGKILL: both read as SIGKILL.
_KEEPER_RUN = (
    f"(exec {SHELL} /dev/fd/3 2>&4 4>&-); s=$?;"
    ' case $s in 129|13[0-9]|14[0-3]) ulimit -c 0; kill -s "$(kill -l $s)" $$;; esac; exit $s'
)
# Prepended to every script (on its first line, so line numbers hold): the script's own fd is
# the shell's business, not the command's.
_SCRIPT_PREFIX = b"exec 3<&-; "


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
            return "timed out; the command and every process it started were killed"
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


def _is_resource_limit(error: BaseException) -> bool:
    return _is_process_limit(error) or (
        isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE)
    )


def _is_process_limit(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return error.errno == errno.EAGAIN
    # What threading says when clone(2) fails for a new thread (Trio forks from a worker
    # thread): the same process limit.
    return isinstance(error, RuntimeError) and "can't start new thread" in str(error)


@attrs.define(eq=False)
class CommandProcesses:
    """The keepers of running commands, and what finished commands left behind.

    ``subreaper`` is for the tool server's own process only: it makes the tool server the parent
    of every orphan, reaps them, and lets a spawn reclaim them. An embedding process keeps it off
    (its other children are not ours to reap or kill).
    """

    sandbox: LimitsInForce = NO_LIMITS_SAID
    subreaper: bool = False
    keepers: set[int] = attrs.field(factory=set)
    # Spawns and reclaims take turns: a keeper forked but not yet registered is not a leftover.
    _lock: trio.Lock = attrs.field(factory=trio.Lock)
    # Why this tool server cannot start processes any more, once it knows it cannot.
    _wedged: AsyncValue[str | None] = attrs.field(factory=lambda: AsyncValue(None))

    def __attrs_post_init__(self) -> None:
        load_prctl()  # here: the keeper's preexec_fn runs between fork and exec
        if self.subreaper:
            become_subreaper()

    async def wait_wedged(self) -> str:
        reason = await self._wedged.wait_value(lambda reason: reason is not None)
        assert reason is not None
        return reason

    def _leftovers(self, table: dict[int, tuple[int, str]]) -> Collection[int]:
        me = os.getpid()
        roots = [pid for pid, (ppid, _) in table.items() if ppid == me and pid not in self.keepers]
        return [*roots, *descendants(roots, table)]

    async def reclaim(self) -> int:
        """Kill what finished commands left running; returns how many processes that was."""
        if not self.subreaper:
            return 0
        try:
            killed = await kill_tree(self._leftovers)
        except OSError:  # /proc cannot be read (out of file descriptors): nothing to reclaim
            return 0
        # Their pids are free only once reaped; SIGKILL takes effect within a few ms.
        with trio.move_on_after(1.0):
            await poll_until(lambda: self.reap() == 0)
        return killed

    def reap(self) -> int:
        """Reap zombie children that are not keepers (those are Trio's); returns how many live
        children that are not keepers are left."""
        if not self.subreaper:
            return 0
        me = os.getpid()
        left = 0
        try:
            table = process_table()
        except OSError:
            return 0
        for pid, (ppid, state) in table.items():
            if ppid != me or pid in self.keepers:
                continue
            if state in "ZX":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            else:
                left += 1
        return left

    async def serve_reaper(self) -> None:
        """Reap orphans as they die (they are this process's children once it is a subreaper)."""
        if not self.subreaper:
            return
        with trio.open_signal_receiver(signal.SIGCHLD) as signals:
            async for _ in signals:
                # Not while a spawn is under way: its keeper may already be a zombie, and is
                # Trio's to reap (it would read exit status 0) until it is registered.
                async with self._lock:
                    self.reap()

    def describe_spawn_error(self, error: BaseException) -> str:
        number = error.errno if isinstance(error, OSError) else None
        if _is_process_limit(error):
            return f"{describe_processes(self.sandbox)} reached"
        if number in (errno.EMFILE, errno.ENFILE):
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            return f"the tool server's open-file limit ({soft}) reached"
        if number == errno.ENOMEM:
            return f"{describe_memory(self.sandbox)} reached"
        if number == errno.ENOSPC:
            return "no space left on device"
        return str(error)

    async def spawn(
        self, nursery: trio.Nursery, script: bytes, *, cwd: Path, output_fd: int, kill_grace: float
    ) -> trio.Process:
        """Start the keeper of ``script`` in ``nursery``; on a resource limit, reclaim and try
        once more. Raises :class:`SpawnError` naming the limit."""
        async with self._lock:
            try:
                return await self._spawn_once(nursery, script, cwd, output_fd, kill_grace)
            except (OSError, RuntimeError) as error:
                if not (self.subreaper and _is_resource_limit(error)):
                    raise self.failure(error) from error
            reclaimed = await self.reclaim()
            try:
                return await self._spawn_once(nursery, script, cwd, output_fd, kill_grace)
            except (OSError, RuntimeError) as error:
                raise self.failure(error, reclaimed) from error

    def failure(self, error: BaseException, reclaimed: int = 0) -> SpawnError:
        """The error for a command that could not start; a resource limit hit with no command
        running means the tool server is wedged (see :meth:`wait_wedged`)."""
        message = f"could not start {SHELL}: {self.describe_spawn_error(error)}"
        if not (self.subreaper and _is_resource_limit(error)):
            return SpawnError(message)
        if reclaimed:
            message += f" ({reclaimed} processes left by earlier commands were killed)"
        if self.keepers:
            message += (
                f"; {len(self.keepers)} running command(s) or task(s) hold the rest:"
                " cancel some (get_all_tasks lists the tasks)"
            )
        elif self._wedged.value is None:
            # Nothing of the commands' is left, and still nothing can start: the limit is the
            # tool server's own (a command may have lowered it with prlimit). Only a fresh
            # sandbox helps; the tool server's owner ends it.
            self._wedged.value = message
        return SpawnError(message)

    async def _spawn_once(
        self, nursery: trio.Nursery, script: bytes, cwd: Path, output_fd: int, kill_grace: float
    ) -> trio.Process:
        script_fd = memfd_holding("command", _SCRIPT_PREFIX + script)
        try:
            with single_error():
                process: trio.Process = await nursery.start(
                    functools.partial(
                        trio.run_process,
                        [SHELL, "-c", keeper_script(self.sandbox, _KEEPER_RUN)],
                        stdin=script_fd,
                        stdout=output_fd,
                        stderr=output_fd,
                        cwd=os.fspath(cwd),
                        start_new_session=True,
                        preexec_fn=become_subreaper,
                        check=False,
                        deliver_cancel=functools.partial(stop_keeper, grace=kill_grace),
                    )
                )
        finally:
            os.close(script_fd)
        self.keepers.add(process.pid)
        return process


async def stop_keeper(process: trio.Process, *, grace: float) -> None:
    """Ask the command's processes to stop (SIGTERM), give them ``grace`` seconds, then stop and
    kill the keeper and everything below it.

    The keeper is stopped first, so that it cannot exit and hand its orphans to the tool server
    before they are killed. Safe as ``trio.run_process``'s ``deliver_cancel``.
    """
    keeper = process.pid
    try:
        if process.returncode is None:
            os.kill(keeper, signal.SIGSTOP)
            signal_descendants(keeper, signal.SIGTERM)
            with trio.move_on_after(grace):
                await poll_until(lambda: not _live_below(keeper), 0.01)
    except OSError:
        pass  # gone already, or /proc cannot be read: on to the kill
    finally:
        with trio.CancelScope(shield=True):
            try:
                await kill_process_tree(keeper)
            except OSError:
                # /proc cannot be read (out of file descriptors): the keeper's session is the
                # best left, and the tool server is about to be replaced anyway.
                signal_process_group(keeper, signal.SIGKILL)


def _live_below(root: int) -> bool:
    table = process_table()
    return any(table[pid][1] not in "ZXx" for pid in descendants([root], table))


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
    processes: CommandProcesses | None = None,
) -> ShellExit:
    """Run ``command`` with ``sh``, stdin from /dev/null, stdout and stderr into ``output``.

    On timeout or cancellation the command and every process it started are killed before this
    returns (or re-raises Cancelled). After a normal exit, what the command left running in the
    background keeps running (a command may start a server on purpose), but its output is no
    longer read. Raises :class:`SpawnError` when the shell cannot be started.
    """
    processes = processes or CommandProcesses()
    sandbox = processes.sandbox
    oom_before = oom_kills(sandbox)
    try:
        read_fd, write_fd = os.pipe()
    except OSError as error:
        raise processes.failure(error) from error
    stream = trio.lowlevel.FdStream(read_fd)
    returncode: int | None = None
    process: trio.Process | None = None
    try:
        with trio.move_on_after(math.inf if time_limit is None else time_limit) as deadline:
            with single_error():
                async with trio.open_nursery() as nursery:
                    try:
                        process = await processes.spawn(
                            nursery,
                            command.encode(),
                            cwd=cwd,
                            output_fd=write_fd,
                            kill_grace=kill_grace,
                        )
                    finally:
                        # Only the command may hold the write end, or EOF would never come.
                        os.close(write_fd)
                    reader_scope = trio.CancelScope()
                    nursery.start_soon(_pump, stream, output, reader_scope)
                    returncode = await process.wait()
                    reader_scope.deadline = trio.current_time() + output_drain
    finally:
        if process is not None:
            processes.keepers.discard(process.pid)
        with trio.CancelScope(shield=True):
            await stream.aclose()
    if returncode is None and deadline.cancelled_caught:
        return ShellExit(None, timed_out=True)
    if oom_before is not None:
        oom_after = oom_kills(sandbox)
        if oom_after is not None and oom_after > oom_before:
            # Another command running at the same time may have been the one killed: the count
            # is the sandbox's; it only says the limit was reached while this one ran.
            return ShellExit(
                returncode,
                limit_reached=describe_memory(sandbox),
                limit_kills=oom_after - oom_before,
            )
    return ShellExit(returncode)
