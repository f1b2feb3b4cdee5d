"""The host's processes by parentage, from one pass over /proc/*/stat (this kernel has no
/proc/PID/task/TID/children)."""

from __future__ import annotations

import os
from collections.abc import Iterable


def process_table() -> dict[int, tuple[int, str]]:
    """Every visible process: its parent's pid and its state letter."""
    table: dict[int, tuple[int, str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue  # gone meanwhile
        # The command name may hold spaces and parentheses: the fields follow the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) >= 2:
            table[int(name)] = (int(fields[1]), fields[0].decode())
    return table


def descendants(roots: Iterable[int], table: dict[int, tuple[int, str]] | None = None) -> list[int]:
    """The processes below ``roots`` (not the roots themselves), parents before children;
    ``table``: a :func:`process_table` already read (else one is read now)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in (process_table() if table is None else table).items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    pending = [child for root in roots for child in children.get(root, ())]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return found
