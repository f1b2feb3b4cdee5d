"""What the sandbox uses right now (memory, processes), for ``status``.

Read on the host, never asked of the (untrusted) sandbox: from the cgroups the warden reported
when there are any, else by walking the warden's descendants in /proc (their resident memory
summed, which counts shared pages more than once but never hides a process).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _read_int(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().split()[0])
    return None


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{name}/stat").read_bytes().rpartition(b")")[2].split()
            children.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def sandbox_usage(report: Mapping[str, Any], warden_pid: int | None) -> dict[str, object]:
    """``{"memory_bytes", "pids", "source"}``, each None when it cannot be told."""
    limits = report.get("limits")
    cgroups = limits.get("cgroups", {}) if isinstance(limits, dict) else {}
    memory: int | None = None
    pids: int | None = None
    source = "cgroup"
    for controller, directory in cgroups.items():
        base = Path(directory)
        if controller in ("memory", "unified") and memory is None:
            memory = _read_int(base / "memory.usage_in_bytes") or _read_int(base / "memory.current")
        if controller in ("pids", "unified") and pids is None:
            pids = _read_int(base / "pids.current")
    if (memory is None or pids is None) and warden_pid is not None:
        source = "processes" if memory is None and pids is None else "cgroup and processes"
        below = _descendants(warden_pid)
        if pids is None:
            pids = len(below)
        if memory is None:
            pages = 0
            for pid in below:
                with contextlib.suppress(OSError, IndexError, ValueError):
                    pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            memory = pages * _PAGE
    return {"memory_bytes": memory, "pids": pids, "source": source}
