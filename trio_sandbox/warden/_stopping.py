"""How a stopping sandbox is stopped: the grace its processes get, and the lifeline.

A stop asks the sandbox's processes to end (SIGINT), waits a grace period, then kills them. The
grace is 5 s for an ordinary stop (SIGINT/SIGTERM to the warden) and a moment when the warden's
parent died: nobody is left to wait for, and the sandbox must be gone within a second.

The lifeline: the warden stops when its parent dies, by any means, SIGKILL included. The parent
is watched through a pidfd opened first thing (PR_SET_PDEATHSIG would follow the parent's
forking *thread*, and Trio forks from worker threads it retires). The host names itself in
``LIFELINE_VARIABLE``; a warden whose parent is not that process any more started orphaned and
stops at once. Standard library only (opened before Trio).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from ..contract import LIFELINE_VARIABLE

ORDINARY_GRACE = 5.0
LIFELINE_GRACE = 0.25
ORPHANED = -2  # the lifeline's parent was gone before the warden could watch it
# The warden's status when its parent died: as if the terminal had hung up.
PARENT_GONE_STATUS = 129


@dataclass(eq=False, slots=True)
class StopGrace:
    """The grace of the next stop; shortened when the lifeline breaks."""

    seconds: float = ORDINARY_GRACE

    def hurry(self) -> None:
        self.seconds = LIFELINE_GRACE


def open_lifeline() -> int | None:
    """A pidfd of the warden's parent; ORPHANED if it is gone already; None when there is
    nothing to watch (started by init, as a service manager does)."""
    parent = os.getppid()
    expected = os.environ.get(LIFELINE_VARIABLE, "")
    if expected.isdigit() and int(expected) != parent:
        return ORPHANED
    if parent == 1 and not expected:
        return None
    try:
        pidfd = os.pidfd_open(parent)
    except OSError:
        return ORPHANED
    if os.getppid() != parent:  # it died between the two calls
        with contextlib.suppress(OSError):
            os.close(pidfd)
        return ORPHANED
    return pidfd
