"""How often the kernel enforced the sandbox's limits, read on the host from its cgroups.

The warden reports the cgroups it made on its report channel (``{"limits": {"cgroups":
{controller: directory}}}``); the host reads their event counters itself, never asking the
sandbox: for ``memory`` the processes the OOM killer killed there (``oom_kill`` in
``memory.events`` on cgroup v2, in ``memory.oom_control`` on v1), for ``pids`` the forks refused
at the limit (``max`` in ``pids.events``, both versions). Both only grow, and each warden run
makes fresh cgroups, so what a counter says is what happened to this generation.

Where the warden made no cgroup, nothing is counted and nothing is reported: an ordinary user
without a delegated cgroup (its limits are rlimits: a fork refused or an allocation failing
inside leaves no trace the host can read), a systemd scope (its cgroup is systemd's, not
reported), the ``process`` back end, a container engine's or a pod's own limits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, NoReturn, TypeAlias

import attrs
import trio

from ._usage import CGROUP_ROOT, cgroup_directory

# The limits whose hits are counted, and where: (controllers, (file, key) to try in order).
_COUNTERS: Final = {
    "memory": (
        ("memory", "unified"),
        (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")),
    ),
    "pids": (("pids", "unified"), (("pids.events", "max"),)),
}
LIMIT_HIT_KINDS: Final = tuple(_COUNTERS)
DEFAULT_WATCH_INTERVAL: Final = 1.0

LimitsGetter: TypeAlias = Callable[[], Mapping[str, Any] | None]
HitCallback: TypeAlias = Callable[[str, int], None]


def _read_key(path: Path, key: str) -> int | None:
    """The value of ``key`` in a flat-keyed cgroup file (``key value`` lines)."""
    with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return None


def read_limit_hits(
    limits: Mapping[str, Any] | None, *, root: Path = CGROUP_ROOT
) -> dict[str, tuple[Path, int]]:
    """``{limit: (cgroup directory, hits so far)}`` for each limit whose counter can be read
    in the cgroups of ``limits`` (the warden's limits report); empty where there are none."""
    cgroups = limits.get("cgroups") if isinstance(limits, Mapping) else None
    if not isinstance(cgroups, Mapping):
        return {}
    found: dict[str, tuple[Path, int]] = {}
    for limit, (controllers, counters) in _COUNTERS.items():
        for controller in controllers:
            directory = cgroup_directory(cgroups.get(controller), root)
            if directory is None:
                continue
            for name, key in counters:
                value = _read_key(directory / name, key)
                if value is not None:
                    found[limit] = (directory, value)
                    break
            if limit in found:
                break
    return found


@attrs.define(eq=False)
class LimitHits:
    """What was counted so far per limit and cgroup; :meth:`check` says what is new."""

    root: Path = CGROUP_ROOT
    _seen: dict[tuple[str, Path], int] = attrs.field(factory=dict)

    def check(self, limits: Mapping[str, Any] | None) -> dict[str, int]:
        """The hits counted since the last check, per limit (only those with some)."""
        new: dict[str, int] = {}
        for limit, (directory, value) in read_limit_hits(limits, root=self.root).items():
            before = self._seen.get((limit, directory), 0)
            self._seen[(limit, directory)] = value
            if value > before:  # (a counter that went back is a new cgroup's: a new start)
                new[limit] = value - before
        return new


async def serve_limit_watch(
    limits: LimitsGetter,
    on_hit: HitCallback,
    *,
    interval: float = DEFAULT_WATCH_INTERVAL,
    root: Path = CGROUP_ROOT,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Every ``interval`` seconds, and once more when cancelled, read the limit-hit counters
    of the cgroups ``limits()`` names (the current limits report of one warden, None until it
    came) and call ``on_hit(limit, count)`` with the hits since the last call, for ``memory``
    (processes killed) and ``pids`` (forks refused). Start one per generation; it reads a few
    small files per interval and nothing where there is no cgroup."""
    hits = LimitHits(root)

    def check() -> None:
        for limit, count in hits.check(limits()).items():
            on_hit(limit, count)

    task_status.started()
    try:
        while True:
            check()
            await trio.sleep(interval)
    finally:
        # The last hits of a generation that is ending (its cgroups may be gone already).
        check()


@attrs.frozen
class LimitNumbers:
    """The limits in force as numbers, for gauges (None: no such limit, or nothing enforces
    it): the sandbox's memory in bytes and its processes (for a limit enforced per command,
    as an rlimit, that bound per command)."""

    memory_bytes: int | None = None
    pids: int | None = None


def limit_numbers(limits: Mapping[str, Any] | None) -> LimitNumbers:
    """From the warden's limits report (``{"memory": {"limit", "enforced_by"}, ...}``)."""

    def number(name: str) -> int | None:
        entry = limits.get(name) if isinstance(limits, Mapping) else None
        if not isinstance(entry, Mapping) or entry.get("enforced_by") is None:
            return None
        value = entry.get("limit")
        return value if type(value) is int and value > 0 else None

    return LimitNumbers(number("memory"), number("pids"))
