"""Running the warden child: start it in its own process group, read the CA block, stop it surely.

Teardown follows the contract: SIGINT to the warden, up to ``grace`` seconds for it to stop its
sandbox, then SIGKILL to its whole process group so that nothing it started can outlive it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import attrs
import trio

from ..concurrency import stopping_process_group
from ..tls import CaBlockError, read_ca_block
from ._errors import SandboxStartError
from ._streams import OutputTail, iter_lines, pump_lines_to_log, pump_reports, pump_stderr

logger = logging.getLogger("trio_sandbox.sandbox")
# Start-up milestones, one line each, for people watching a start (``trio-sandbox run``).
stages = logging.getLogger("trio_sandbox.stages")


@attrs.frozen
class WardenStarted:
    """What :func:`serve_warden` reports once the sandbox printed its CA block."""

    process: trio.Process
    server_ca_pem: str


async def serve_warden(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    ca_timeout: float,
    stop_grace: float,
    stderr_tail: OutputTail,
    log: logging.Logger = logger,
    handed_fds: Sequence[int] = (),
    reports: trio.abc.ReceiveStream | None = None,
    on_report_line: Callable[[str], None] | None = None,
    task_status: trio.TaskStatus[WardenStarted] = trio.TASK_STATUS_IGNORED,
) -> int:
    """Run the warden until it exits and return its exit status.

    Reports :class:`WardenStarted` once the CA block has been read; raises
    :class:`SandboxStartError` when the block does not come (exit, garbage, timeout). Its output is
    drained into ``log`` for the warden's whole life, as untrusted text (the sandbox writes there
    too). ``handed_fds``: descriptors for the warden alone (the write end of the report channel,
    the sandbox's variables), closed here once it runs; ``on_report_line`` gets each line read
    from ``reports``, the report channel's read end.
    """
    async with trio.open_nursery() as nursery:
        try:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=dict(env),
                    pass_fds=tuple(handed_fds),
                    check=False,
                    start_new_session=True,
                    deliver_cancel=stopping_process_group(
                        grace=stop_grace, first_signal=signal.SIGINT, leader_only=True
                    ),
                )
            )
        except OSError as exc:
            raise SandboxStartError("warden", f"cannot run {argv[0]!r}: {exc}") from exc
        finally:
            for fd in handed_fds:
                os.close(fd)  # the warden's now: its exit is the report channel's end
        stages.info("warden running (pid %d); waiting for its CA block", process.pid)
        assert process.stdout is not None
        assert process.stderr is not None
        nursery.start_soon(pump_stderr, process.stderr, stderr_tail, log, "warden stderr: ")
        if reports is not None and on_report_line is not None:
            nursery.start_soon(pump_reports, reports, on_report_line)
        lines = iter_lines(process.stdout)
        block = None
        failure = ""
        with trio.move_on_after(ca_timeout) as deadline:
            try:
                block = await read_ca_block(lines)
            except CaBlockError as exc:
                failure = str(exc)
        if block is None:
            if deadline.cancelled_caught:
                failure = f"no server CA block within {ca_timeout:g} s"
            # Let a warden that is exiting anyway finish, so that its status can be reported.
            with trio.move_on_after(0.5):
                await process.wait()
            raise SandboxStartError(
                "ca", failure, exit_status=process.returncode, stderr_tail=stderr_tail.text()
            )
        nursery.start_soon(pump_lines_to_log, lines, log, "warden stdout: ")
        task_status.started(WardenStarted(process, block.ca_pem))
        await process.wait()
    assert process.returncode is not None
    return process.returncode
