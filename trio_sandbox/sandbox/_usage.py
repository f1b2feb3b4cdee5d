"""What the sandbox uses right now (memory, processes), for ``status``.

Read on the host, never asked of the (untrusted) sandbox: from the cgroups the warden reported
on its report channel when there are any (and only under /sys/fs/cgroup), else by walking the
warden's descendants in /proc (their resident memory summed, which counts shared pages more than
once but never hides a process).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..concurrency import descendants

_PAGE = os.sysconf("SC_PAGE_SIZE")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read_int(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(path.read_text().split()[0])
    return None


def cgroup_directory(directory: object, root: Path = CGROUP_ROOT) -> Path | None:
    """``directory`` if it is a cgroup's, under ``root`` (the host reads nothing else on a
    report's word)."""
    if not isinstance(directory, str) or not os.path.isabs(directory) or "\0" in directory:
        return None
    path = Path(os.path.normpath(directory))
    return path if path.is_relative_to(root) and path != root else None


def sandbox_usage(limits: Mapping[str, Any] | None, warden_pid: int | None) -> dict[str, object]:
    """``{"memory_bytes", "pids", "source"}``, each None when it cannot be told; ``limits``:
    the warden's limits report."""
    cgroups = limits.get("cgroups") if limits is not None else None
    memory: int | None = None
    pids: int | None = None
    source = "cgroup"
    for controller, directory in (cgroups if isinstance(cgroups, dict) else {}).items():
        base = cgroup_directory(directory)
        if base is None:
            continue
        if controller in ("memory", "unified") and memory is None:
            memory = _read_int(base / "memory.usage_in_bytes") or _read_int(base / "memory.current")
        if controller in ("pids", "unified") and pids is None:
            pids = _read_int(base / "pids.current")
    if (memory is None or pids is None) and warden_pid is not None:
        source = "processes" if memory is None and pids is None else "cgroup and processes"
        below = descendants([warden_pid])
        if pids is None:
            pids = len(below)
        if memory is None:
            pages = 0
            for pid in below:
                with contextlib.suppress(OSError, IndexError, ValueError):
                    pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            memory = pages * _PAGE
    return {"memory_bytes": memory, "pids": pids, "source": source}
