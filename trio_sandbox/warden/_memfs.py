"""The sandbox's in-memory file systems other than /tmp: how big /dev/shm may grow.

/dev/shm (POSIX shared memory, multiprocessing's semaphores) is a tmpfs of its own, mode 1777,
in every back end. Its bound is its own rather than a share of ``tmp_size``: 64 MiB, the
container engines' default, or ``tmp_size`` when that is smaller (a sandbox asked to keep its
scratch space small keeps it small everywhere).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..contract import ResourceLimits

SHM_SIZE = 64 * 1024 * 1024


def shm_size(limits: ResourceLimits) -> int:
    """The size of /dev/shm in bytes."""
    if limits.tmp_size is None:
        return SHM_SIZE
    return min(SHM_SIZE, limits.tmp_size)
