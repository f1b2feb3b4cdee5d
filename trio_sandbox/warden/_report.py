"""The warden's reports to the host, on a pipe no sandbox can reach (``--report-fd N``).

The warden's stdout and stderr are the sandbox's too: bubblewrap, the container engine and the
command inherit them, and ``/proc/PID/fd/2`` of any process in the sandbox reopens them. So the
host trusts nothing it reads there. For what the host does trust (the limits in force and what
enforces them, the warden's warnings, the egress audit) it passes the write end of a pipe of its
own as ``--report-fd N``. The warden marks it close-on-exec as it reads its command line, so no
child (bubblewrap, podman, conmon, the command) ever holds it, and writes one JSON object per
line: ``{"limits": {...}}``, ``{"warning": "..."}``, ``{"egress": {...}}`` (the egress audit's
changed counters), ``{"connection": {...}}`` (one connection of the sandbox, or a window's sum:
``egress.ConnectionRecord``). Without the option
the warden reports nothing there, and its stdout and stderr are what the contract says.

Standard library only: the warden reports its limits before it imports Trio.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass

from ..contract import REPORT_MAX_LINE_BYTES
from ._errors import ReportFdError


def open_report_fd(text: str) -> int:
    """Take over the descriptor of ``--report-fd``: check it and make it close-on-exec."""
    if not text.isdigit() or int(text) <= 2:
        raise ReportFdError(f"--report-fd {text!r}: expected a descriptor number above 2")
    fd = int(text)
    try:
        mode = os.fstat(fd).st_mode
    except OSError as error:
        raise ReportFdError(f"--report-fd {fd}: {error.strerror}") from None
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        raise ReportFdError(f"--report-fd {fd}: not a pipe or a socket")
    # No child inherits it from here on, whatever starts it (subprocess, fork + exec).
    os.set_inheritable(fd, False)
    return fd


@dataclass(frozen=True, slots=True)
class Reporter:
    """Where the warden's reports go; ``fd`` None: nowhere (the host did not ask)."""

    fd: int | None = None

    @property
    def enabled(self) -> bool:
        return self.fd is not None

    def send(self, kind: str, value: object) -> None:
        """One report line, written whole (a blocking write: the host drains the pipe)."""
        if self.fd is None:
            return
        line = (json.dumps({kind: value}, sort_keys=True) + "\n").encode()
        if len(line) > REPORT_MAX_LINE_BYTES:
            raise ValueError(f"a {kind} report of {len(line)} bytes is too long for one line")
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except BrokenPipeError:
            pass  # the host is gone; the lifeline stops the warden
