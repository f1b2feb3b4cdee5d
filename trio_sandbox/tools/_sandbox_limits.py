"""What the sandbox around the tool server allows, as the warden told it (the contract's
LIMITS_VARIABLE), and how a command that hit the memory limit is told apart.

Commands run with the highest OOM score (1000), so that when the sandbox's memory limit is
reached the kernel kills the command, not the tool server. Where the limit is only an rlimit
(no cgroup for this user), each command gets it as ``ulimit -v``: not the tool server, whose
worker threads reserve far more address space than they use.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path

import attrs

from ..contract import LIMITS_VARIABLE

# Where the memory cgroup's event counters may be: shown by the warden, or a container's own.
_OOM_COUNTERS = ("memory.oom_control", "memory.events")
_CONTAINER_CGROUPS = (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup"))
PER_COMMAND_RLIMIT = "rlimit, per command"


@attrs.frozen
class SandboxLimits:
    memory: int | None = None
    memory_enforced_by: str | None = None
    memory_cgroup: Path | None = None
    pids: int | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SandboxLimits:
        try:
            raw = json.loads(environ.get(LIMITS_VARIABLE, "{}"))
        except ValueError:
            return cls()
        if not isinstance(raw, dict):
            return cls()
        memory = raw.get("memory")
        by = raw.get("memory_enforced_by")
        cgroup = raw.get("memory_cgroup")
        pids = raw.get("pids")
        return cls(
            memory if isinstance(memory, int) else None,
            by if isinstance(by, str) else None,
            Path(cgroup) if isinstance(cgroup, str) else None,
            pids if isinstance(pids, int) else None,
        )

    def keeper_script(self, run: str) -> str:
        """A ``sh -c`` script that moves the command's script from stdin to fd 3 and stderr to
        fd 4 (the keeper's own messages, such as "Killed", are not the command's output),
        prepares the command's processes, then does ``run``."""
        steps = ["exec 3<&0 </dev/null 4>&2 2>/dev/null", "echo 1000 > /proc/self/oom_score_adj"]
        if self.memory is not None and self.memory_enforced_by == PER_COMMAND_RLIMIT:
            steps.append(f"ulimit -v {self.memory // 1024}")
        return "; ".join([*steps, run])

    def oom_kills(self) -> int | None:
        """How many processes the memory limit killed so far, where that can be read."""
        places = [self.memory_cgroup] if self.memory_cgroup is not None else []
        for directory in [*places, *_CONTAINER_CGROUPS]:
            for name in _OOM_COUNTERS:
                with contextlib.suppress(OSError, ValueError):
                    for line in (directory / name).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            return int(value)
        return None

    def describe_processes(self) -> str:
        if self.pids is None:
            return "the process limit"
        return f"the process limit ({self.pids})"

    def describe_memory(self) -> str:
        if self.memory is None:
            return "the memory limit"
        return f"memory limit {self.memory // 2**20} MiB"


# Frozen, so one shared instance is a safe default: a sandbox that said nothing of its limits.
NO_SANDBOX_LIMITS = SandboxLimits()
