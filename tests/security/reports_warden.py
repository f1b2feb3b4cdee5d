"""The warden run as a host would run it, with the report channel: its reports read whole."""

from __future__ import annotations

import json
import os
import subprocess

import trio

from tests.support.sandbox_users import SandboxUser
from tests.warden.warden_harness import HANG_GUARD_SECONDS, warden_argv


async def run_warden_with_report_fd(
    user: SandboxUser, *options: str, image: str = "host", command: list[str]
) -> tuple[subprocess.CompletedProcess[bytes], list[str], int]:
    """The warden as ``user`` with a report pipe (``--report-fd``): its result, the lines of its
    report channel and the pipe's inode."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    inode = os.fstat(read_fd).st_ino
    lines: list[str] = []
    argv = [*warden_argv(user, "--report-fd", str(write_fd), *options), image, "--", *command]
    async with trio.lowlevel.FdStream(read_fd) as reading, trio.open_nursery() as nursery:

        async def read_reports() -> None:
            data = b""
            while chunk := await reading.receive_some():
                data += chunk
            lines.extend(data.decode().splitlines())

        nursery.start_soon(read_reports)
        try:
            with trio.fail_after(HANG_GUARD_SECONDS):
                result = await trio.run_process(
                    argv,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                    pass_fds=(write_fd,),
                    env=user.env(),
                )
        finally:
            os.close(write_fd)  # the warden's copy is gone with it: the reader sees EOF
    return result, lines, inode


def egress_audit(lines: list[str]) -> dict[str, dict[str, dict[str, int]]]:
    """The egress audit's tables as a host mirrors them from the report lines."""
    tables: dict[str, dict[str, dict[str, int]]] = {
        "rules": {},
        "destinations": {},
        "refused": {},
    }
    for line in lines:
        changes = json.loads(line).get("egress")
        if changes is None:
            continue
        for table, entries in tables.items():
            entries.update(changes.get(table, {}))
    return tables
