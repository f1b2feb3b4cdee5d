"""What the sandbox around the tool server allows, as the warden told it (the contract's
LIMITS_VARIABLE, a ``contract.LimitsInForce``), and how a command that hit the memory limit is
told apart.

Commands run with the highest OOM score (1000), so that when the sandbox's memory limit is
reached the kernel kills the command, not the tool server. Where the limit is only an rlimit
(no cgroup for this user), each command gets it as ``ulimit -v``: not the tool server, whose
worker threads reserve far more address space than they use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path

from ..contract import LIMITS_VARIABLE, PER_COMMAND_RLIMIT, LimitsInForce

# Where the memory cgroup's event counters may be: shown by the warden, or a container's own.
_OOM_COUNTERS = ("memory.oom_control", "memory.events")
_CONTAINER_CGROUPS = (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup"))
# Frozen, so one shared instance is a safe default: a sandbox that said nothing of its limits.
NO_LIMITS_SAID = LimitsInForce()


def limits_from_environ(environ: Mapping[str, str]) -> LimitsInForce:
    return LimitsInForce.from_json(environ.get(LIMITS_VARIABLE, "{}"))


def keeper_script(sandbox: LimitsInForce, run: str) -> str:
    """A ``sh -c`` script that moves the command's script from stdin to fd 3 and stderr to fd 4
    (the keeper's own messages, such as "Killed", are not the command's output), prepares the
    command's processes, then does ``run``."""
    steps = ["exec 3<&0 </dev/null 4>&2 2>/dev/null", "echo 1000 > /proc/self/oom_score_adj"]
    memory = sandbox.limits.memory
    if memory is not None and sandbox.memory_enforced_by == PER_COMMAND_RLIMIT:
        steps.append(f"ulimit -v {memory // 1024}")
    return "; ".join([*steps, run])


def oom_kills(sandbox: LimitsInForce) -> int | None:
    """How many processes the memory limit killed so far, where that can be read."""
    cgroup = sandbox.memory_cgroup
    places = [Path(cgroup)] if cgroup is not None else []
    for directory in [*places, *_CONTAINER_CGROUPS]:
        for name in _OOM_COUNTERS:
            with contextlib.suppress(OSError, ValueError):
                for line in (directory / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
    return None


def describe_processes(sandbox: LimitsInForce) -> str:
    if sandbox.limits.pids is None:
        return "the process limit"
    return f"the process limit ({sandbox.limits.pids})"


def describe_memory(sandbox: LimitsInForce) -> str:
    if sandbox.limits.memory is None:
        return "the memory limit"
    return f"memory limit {sandbox.limits.memory // 2**20} MiB"
