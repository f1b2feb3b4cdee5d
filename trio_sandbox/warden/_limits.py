"""Resource limits for the whole sandbox: memory, processes, CPU, and the size of /tmp.

The limits cover everything in the sandbox together (the tool server and every command), and
none is unlimited by default. What enforces them depends on the host, tried in this order:

- cgroup v1 (root on hosts that mount the v1 hierarchies, like this project's CI machines): a
  ``trio-sandbox-*`` child of the warden's own cgroup in the memory, pids and cpu hierarchies;
- cgroup v2 with the controllers delegated to the warden's own cgroup (a container runtime that
  delegates): a child cgroup there;
- cgroup v2 through systemd (most current distributions): ``systemd-run --scope`` (``--user`` for
  an ordinary user) with MemoryMax, TasksMax and CPUQuota;
- otherwise rlimits, set inside the sandbox so that they count the sandbox's processes only:
  RLIMIT_NPROC for the processes, and RLIMIT_AS for each command's memory (per process, not for
  the sandbox as a whole); CPU cannot be bounded that way.

/tmp is a tmpfs with bubblewrap's ``--size`` everywhere. One warning names each limit that is not
enforced as asked. Standard library only: the warden sets this up before it imports Trio. The
limits' grammar and values are the contract's (``contract.ResourceLimits``); this module decides
their defaults on this host and how they are enforced.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..contract import LIMIT_KINDS, PER_COMMAND_RLIMIT, LimitsInForce, ResourceLimits
from ._report import Reporter

CGROUP_PREFIX = "trio-sandbox-"
CGROUP_ROOT = Path("/sys/fs/cgroup")
_CPU_PERIOD_US = 100_000


def describe_size(size: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor and size % (factor // 4 or 1) == 0:
            value = size / factor
            return f"{value:g} {unit}"
    return f"{size} bytes"


def _total_memory() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 8 * 2**30


def default_limits() -> ResourceLimits:
    """Bounds that protect a laptop: 4 GiB or half the RAM, 1024 processes, half the CPUs (at
    least one), and a 1 GiB /tmp (which counts toward the memory)."""
    memory = min(4 * 2**30, _total_memory() // 2)
    cpus = max(1.0, (os.cpu_count() or 2) / 2)
    return ResourceLimits(memory=memory, pids=1024, cpus=cpus, tmp_size=min(2**30, memory // 2))


@dataclass(frozen=True, slots=True)
class Enforcement:
    """How each limit is enforced here (``None``: not at all)."""

    memory: str | None = None
    pids: str | None = None
    cpus: str | None = None
    tmp_size: str | None = None

    def unenforced(self, limits: ResourceLimits) -> list[str]:
        missing = []
        for kind in LIMIT_KINDS:
            if getattr(limits, kind.name) is not None and getattr(self, kind.name) is None:
                missing.append(kind.name)
        if limits.memory is not None and self.memory == PER_COMMAND_RLIMIT:
            missing.append("memory for the sandbox as a whole (per command only)")
        return missing


@dataclass(eq=False, slots=True)
class LimitPlan:
    """What the back end does to enforce the limits, decided before the sandbox starts."""

    limits: ResourceLimits
    enforcement: Enforcement
    # Host directories of the sandbox's cgroups by controller (removed after the sandbox).
    cgroups: dict[str, Path] = field(default_factory=dict)
    # A prefix for the command run inside the sandbox (rlimits set there).
    inner_prefix: list[str] = field(default_factory=list)
    # A prefix for the bwrap command on the host (systemd-run).
    outer_prefix: list[str] = field(default_factory=list)

    @property
    def memory_cgroup(self) -> Path | None:
        """Where the memory controller's files are (v1: memory; v2: the unified directory)."""
        return self.cgroups.get("memory") or self.cgroups.get("unified")

    def join(self) -> None:
        """Move the calling process into the sandbox's cgroups (run in the child before exec)."""
        for directory in self.cgroups.values():
            (directory / "cgroup.procs").write_text("0")

    def remove(self) -> None:
        """Remove the cgroups once nothing is left in them."""
        for directory in self.cgroups.values():
            with contextlib.suppress(OSError):
                directory.rmdir()

    def report(self) -> dict[str, object]:
        """The limits and what enforces them, for the warden's ``limits:`` line."""
        out: dict[str, object] = {}
        for kind in LIMIT_KINDS:
            out[kind.name] = {
                "limit": getattr(self.limits, kind.name),
                "enforced_by": getattr(self.enforcement, kind.name),
            }
        out["cgroups"] = {name: str(path) for name, path in self.cgroups.items()}
        return out


# --- discovering what the host offers -------------------------------------------------------


def _own_cgroups() -> dict[str, str]:
    """controller name (or "" for the v2 unified hierarchy) -> this process's cgroup path."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _id, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                found[controller] = path
    return found


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, super options) of the cgroup mounts."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            before, _, after = line.partition(" - ")
            fields = before.split()
            fstype, _source, options = [*after.split(), "", "", ""][:3]
            if fstype in ("cgroup", "cgroup2"):
                found.append((fields[4], fstype, set(options.split(","))))
    return found


def _v1_dir(controller: str) -> Path | None:
    own = _own_cgroups().get(controller)
    if own is None:
        return None
    for mount, fstype, options in _mounts():
        if fstype == "cgroup" and controller in options:
            base = Path(mount) / own.lstrip("/")
            return base if os.access(base, os.W_OK) else None
    return None


def _v2_dir() -> tuple[Path, set[str]] | None:
    """This process's cgroup v2 directory and the controllers delegated below it."""
    own = _own_cgroups().get("")
    if own is None:
        return None
    for mount, fstype, _options in _mounts():
        if fstype == "cgroup2":
            base = Path(mount) / own.lstrip("/")
            with contextlib.suppress(OSError):
                delegated = set((base / "cgroup.subtree_control").read_text().split())
                if os.access(base, os.W_OK) and delegated:
                    return base, delegated
    return None


def _systemd_available(as_root: bool) -> bool:
    if shutil.which("systemd-run") is None or not os.path.isdir("/run/systemd/system"):
        return False
    if as_root:
        return True
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    return bool(runtime) and os.path.exists(os.path.join(runtime, "systemd", "private"))


def _warden_alive(cgroup_name: str) -> bool:
    """Whether the warden that named a cgroup (``trio-sandbox-PID-...``) still runs: a live
    warden's cgroup is empty between its creation and bubblewrap joining it."""
    pid = cgroup_name[len(CGROUP_PREFIX) :].partition("-")[0]
    return pid.isdigit() and os.path.exists(f"/proc/{pid}")


def sweep_stale_cgroups() -> None:
    """Remove empty ``trio-sandbox-*`` cgroups a killed warden left behind (best effort)."""
    for controller in ("memory", "pids", "cpu"):
        base = _v1_dir(controller)
        if base is None:
            continue
        with contextlib.suppress(OSError):
            for entry in base.iterdir():
                if _warden_alive(entry.name):
                    continue
                if entry.name.startswith(CGROUP_PREFIX) and entry.is_dir():
                    with contextlib.suppress(OSError):
                        if not (entry / "cgroup.procs").read_text().strip():
                            entry.rmdir()


# --- planning ---------------------------------------------------------------------------------


def _write(directory: Path, name: str, value: str) -> bool:
    try:
        (directory / name).write_text(value)
    except OSError:
        return False
    return True


def _settings(limits: ResourceLimits, version: int) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(limit, controller, [(file, value), ...]) for each limit that is set; the first file
    must be written for the limit to count as enforced (the others are refinements)."""
    out: list[tuple[str, str, list[tuple[str, str]]]] = []
    if limits.memory is not None:
        memory = str(limits.memory)
        files = (
            [("memory.limit_in_bytes", memory), ("memory.memsw.limit_in_bytes", memory)]
            if version == 1
            else [("memory.max", memory), ("memory.swap.max", "0")]
        )
        out.append(("memory", "memory", files))  # the memsw/swap line: no swapping around it
    if limits.pids is not None:
        out.append(("pids", "pids", [("pids.max", str(limits.pids))]))
    if limits.cpus is not None:
        quota = str(int(limits.cpus * _CPU_PERIOD_US))
        files = (
            [("cpu.cfs_period_us", str(_CPU_PERIOD_US)), ("cpu.cfs_quota_us", quota)]
            if version == 1
            else [("cpu.max", f"{quota} {_CPU_PERIOD_US}")]
        )
        out.append(("cpus", "cpu", files))
    return out


def _apply(directory: Path, files: list[tuple[str, str]]) -> bool:
    first, *rest = files
    if not _write(directory, *first):
        return False
    for name, value in rest:
        if (directory / name).exists():
            _write(directory, name, value)
    return True


def _plan_v1(limits: ResourceLimits, name: str) -> LimitPlan | None:
    cgroups: dict[str, Path] = {}
    enforced: dict[str, str | None] = {"memory": None, "pids": None, "cpus": None}
    for limit, controller, files in _settings(limits, 1):
        base = _v1_dir(controller)
        if base is None:
            continue
        directory = base / name
        try:
            directory.mkdir()
        except OSError:
            continue
        cgroups[controller] = directory
        if _apply(directory, files):
            enforced[limit] = "cgroup v1"
    if not cgroups:
        return None
    return LimitPlan(
        limits,
        Enforcement(enforced["memory"], enforced["pids"], enforced["cpus"], None),
        cgroups,
    )


def _plan_v2(limits: ResourceLimits, name: str) -> LimitPlan | None:
    found = _v2_dir()
    if found is None:
        return None
    base, delegated = found
    directory = base / name
    try:
        directory.mkdir()
    except OSError:
        return None
    enforced: dict[str, str | None] = {"memory": None, "pids": None, "cpus": None}
    for limit, controller, files in _settings(limits, 2):
        if controller in delegated and _apply(directory, files):
            enforced[limit] = "cgroup v2"
    return LimitPlan(
        limits,
        Enforcement(enforced["memory"], enforced["pids"], enforced["cpus"], None),
        {"unified": directory},
    )


def _plan_systemd(limits: ResourceLimits, as_root: bool) -> LimitPlan:
    prefix = ["systemd-run", "--scope", "--quiet", "--collect"]
    if not as_root:
        prefix.append("--user")
    if limits.memory is not None:
        prefix += ["-p", f"MemoryMax={limits.memory}", "-p", "MemorySwapMax=0"]
    if limits.pids is not None:
        prefix += ["-p", f"TasksMax={limits.pids}"]
    if limits.cpus is not None:
        prefix += ["-p", f"CPUQuota={int(limits.cpus * 100)}%"]
    enforced = "systemd scope (cgroup v2)"
    return LimitPlan(
        limits,
        Enforcement(
            enforced if limits.memory is not None else None,
            enforced if limits.pids is not None else None,
            enforced if limits.cpus is not None else None,
            None,
        ),
        outer_prefix=[*prefix, "--"],
    )


def _plan_rlimits(limits: ResourceLimits, prlimit: str | None) -> LimitPlan:
    prefix: list[str] = []
    pids = None
    if limits.pids is not None and prlimit is not None:
        prefix = [prlimit, f"--nproc={limits.pids}", "--"]
        pids = "rlimit (RLIMIT_NPROC, set inside)"
    memory = PER_COMMAND_RLIMIT if limits.memory is not None else None
    return LimitPlan(limits, Enforcement(memory, pids, None, None), inner_prefix=prefix)


def plan_limits(
    limits: ResourceLimits, *, as_root: bool, prlimit: str | None, tmpfs_size: bool = True
) -> LimitPlan:
    """Decide how the limits are enforced here, creating cgroups where that is the way.

    ``prlimit`` is the path of ``prlimit`` inside the sandbox (None: there is none), and
    ``tmpfs_size`` whether /tmp can be bounded (bubblewrap's --size).
    """
    # os.urandom, as secrets.token_hex: `secrets` would load hashlib before the launch.
    name = f"{CGROUP_PREFIX}{os.getpid()}-{os.urandom(3).hex()}"
    plan = _plan_v1(limits, name)
    if plan is None:
        plan = _plan_v2(limits, name)
    if plan is None and _systemd_available(as_root):
        plan = _plan_systemd(limits, as_root)
    if plan is None:
        plan = _plan_rlimits(limits, prlimit)
    elif plan.enforcement.pids is None and limits.pids is not None and prlimit is not None:
        # A cgroup hierarchy without the pids controller: bound the processes with an rlimit.
        plan.inner_prefix = [prlimit, f"--nproc={limits.pids}", "--"]
        plan.enforcement = replace(plan.enforcement, pids="rlimit (RLIMIT_NPROC, set inside)")
    if plan.enforcement.memory is None and limits.memory is not None:
        plan.enforcement = replace(plan.enforcement, memory=PER_COMMAND_RLIMIT)
    tmp = "tmpfs size" if tmpfs_size and limits.tmp_size is not None else None
    plan.enforcement = replace(plan.enforcement, tmp_size=tmp)
    return plan


def preexec(plan: LimitPlan) -> Callable[[], None] | None:
    """What the bwrap child runs before exec: join the cgroups (before Trio)."""
    if not plan.cgroups or plan.outer_prefix:
        return None
    return plan.join


def limits_for_tools(plan: LimitPlan, memory_cgroup_inside: str | None) -> str:
    """The value of the contract's LIMITS_VARIABLE for the tool server."""
    return LimitsInForce(plan.limits, plan.enforcement.memory, memory_cgroup_inside).to_json()


def announce_limits(plan: LimitPlan, report: Reporter) -> None:
    """One warning on stderr for what is not enforced; and, when the host asked for reports,
    the limits in force on stderr for its log, and on the report channel the limits and the
    warning it trusts (stderr is the sandbox's too)."""
    summary, *warnings = describe(plan)
    for line in [summary, *warnings] if report.enabled else warnings:
        print(f"trio-sandbox-warden: {line}", file=sys.stderr, flush=True)
    report.send("limits", plan.report())
    for line in warnings:
        report.send("warning", line.removeprefix("warning: "))


def describe(plan: LimitPlan) -> Sequence[str]:
    """The warden's stderr lines: the limits in force, and one warning for what is not."""
    parts = []
    limits, enforcement = plan.limits, plan.enforcement
    for name, value in (
        ("memory", describe_size(limits.memory) if limits.memory else None),
        ("pids", str(limits.pids) if limits.pids else None),
        ("cpus", f"{limits.cpus:g}" if limits.cpus else None),
        ("/tmp", describe_size(limits.tmp_size) if limits.tmp_size else None),
    ):
        key = "tmp_size" if name == "/tmp" else name
        by = getattr(enforcement, key)
        parts.append(f"{name} {value or 'unlimited'}" + (f" ({by})" if by and value else ""))
    lines = ["limits: " + ", ".join(parts)]
    missing = enforcement.unenforced(limits)
    if missing:
        lines.append(
            "warning: not enforced on this host: "
            + ", ".join(missing)
            + " (no cgroup this user may write: see the README's limits section)"
        )
    return lines
