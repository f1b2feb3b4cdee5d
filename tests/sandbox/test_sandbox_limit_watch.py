"""The host's count of the kernel's limit hits (``serve_limit_watch``): in a real bubblewrap
sandbox as root (cgroup v1 here) a fork bomb over ``pids`` and an allocation over ``memory`` are
counted; as the ordinary user (no cgroup: rlimits) nothing is, and nothing breaks. Against cgroup
files laid out under a test directory (both cgroup versions), virtual time: hits are reported
once each, as they come, and once more as the watch is cancelled; what a report names outside
the cgroup tree is never read."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.sandbox.test_sandbox_limits import ALLOCATE, FORK_BOMB
from tests.support.sandbox_users import SandboxUser, this_process_user
from trio_sandbox.sandbox import LimitNumbers, limit_numbers, serve_limit_watch
from trio_sandbox.sandbox._limit_watch import read_limit_hits

CHILD = Path(__file__).with_name("limit_hits_child.py")
MIB = 2**20
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


@needs_bwrap
async def test_a_fork_bomb_and_an_allocation_over_the_limits_are_counted(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    limits = {"memory": "256M", "pids": "64"}
    report = await sandbox_user.run_json(
        str(CHILD), json.dumps(limits), FORK_BOMB, ALLOCATE, "echo ok", home=workspace, limit=120
    )
    bomb, allocation, after = report["outputs"]
    assert "EAGAIN" in bomb
    assert after == "ok\n[exit code 0]"
    assert report["generation"] == 1
    # The gauges' numbers: both limits are enforced somehow for both users.
    assert report["numbers"] == [256 * MIB, 64]
    counted: dict[str, int] = {}
    for limit, count in report["hits"]:
        assert count > 0
        counted[limit] = counted.get(limit, 0) + count
    if report["cgroups"]:
        # Root on this machine: cgroup v1, the sandbox's own memory and pids cgroups.
        assert {"memory", "pids"} <= set(report["cgroups"])
        assert allocation.splitlines()[-1] == "[killed: memory limit 256 MiB reached]"
        assert counted["memory"] >= 1
        assert counted["pids"] >= 1
    else:
        # No cgroup for this user (rlimits inside): nothing the host can count.
        assert not sandbox_user.is_root
        assert "MemoryError" in allocation
        assert counted == {}


async def test_the_process_back_end_reports_no_cgroup_and_nothing_is_counted(
    tmp_path: Path,
) -> None:
    limits = {"pids": "64", "backend": "process"}
    report = await this_process_user().run_json(
        str(CHILD), json.dumps(limits), "echo ok", home=tmp_path, limit=120
    )
    assert report["outputs"] == ["ok\n[exit code 0]"]
    assert (report["hits"], report["cgroups"], report["numbers"]) == ([], None, [None, None])


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v1_tree(root: Path) -> dict[str, str]:
    memory, pids = root / "memory" / "a" / "trio-sandbox-1", root / "pids" / "a" / "trio-sandbox-1"
    write(memory / "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    write(pids / "pids.events", "max 0\n")
    return {"memory": str(memory), "pids": str(pids), "cpu": str(root / "cpu" / "x")}


def v2_tree(root: Path) -> dict[str, str]:
    unified = root / "user.slice" / "trio-sandbox-2"
    write(
        unified / "memory.events",
        "low 0\nhigh 0\nmax 12\noom 0\noom_kill 0\noom_group_kill 0\n",
    )
    write(unified / "pids.events", "max 0\n")
    return {"unified": str(unified)}


async def test_hits_are_reported_as_they_come_and_once_more_when_cancelled(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    cgroups = v1_tree(tmp_path)
    report: dict[str, Any] | None = None
    hits: list[tuple[float, str, int]] = []

    def on_hit(limit: str, count: int) -> None:
        hits.append((trio.current_time(), limit, count))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_limit_watch(
                lambda: report, on_hit, interval=1.0, root=tmp_path, task_status=task_status
            )
        )
        await trio.sleep(2.5)  # no report yet: nothing read
        report = {"memory": {"limit": 1, "enforced_by": "cgroup v1"}, "cgroups": cgroups}
        await trio.sleep(1.0)  # read at 3 s: still nothing hit
        write(Path(cgroups["pids"]) / "pids.events", "max 5\n")
        await trio.sleep(1.0)  # read at 4 s: five forks refused
        write(Path(cgroups["pids"]) / "pids.events", "max 7\n")
        oom_control = Path(cgroups["memory"]) / "memory.oom_control"
        write(oom_control, "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
        await trio.sleep(3.0)  # read at 5 s: two more, one kill; then nothing new
        write(oom_control, "oom_kill_disable 0\nunder_oom 1\noom_kill 3\n")
        nursery.cancel_scope.cancel()  # the last read, as the generation ends
    assert [(at - start, limit, count) for at, limit, count in hits] == [
        (4.0, "pids", 5),
        (5.0, "memory", 1),
        (5.0, "pids", 2),
        (7.5, "memory", 2),
    ]


def test_what_is_read_in_each_cgroup_version(tmp_path: Path) -> None:
    v1 = v1_tree(tmp_path / "v1")
    v2 = v2_tree(tmp_path / "v2")
    write(Path(v2["unified"]) / "pids.events", "max 4\n")
    write(Path(v1["pids"]) / "pids.events", "max 2\n")
    found = read_limit_hits({"cgroups": v1}, root=tmp_path / "v1")
    assert {limit: count for limit, (_, count) in found.items()} == {"memory": 0, "pids": 2}
    found = read_limit_hits({"cgroups": v2}, root=tmp_path / "v2")
    # memory.events' "max" is the limit reclaiming, not a kill: only oom_kill counts.
    assert {limit: count for limit, (_, count) in found.items()} == {"memory": 0, "pids": 4}


@pytest.mark.parametrize(
    "report",
    [
        None,
        {},
        {"cgroups": None},
        {"cgroups": "/sys/fs/cgroup/pids"},
        {"cgroups": {}},  # an ordinary user without delegation, the process back end
        {"cgroups": {"pids": 5, "memory": ["x"]}},
        {"cgroups": {"pids": "relative/path", "memory": ""}},
        {"cgroups": {"pids": "/etc", "memory": "/proc/self"}},  # outside the tree
        {"cgroups": {"pids": "ROOT/../outside", "unified": "ROOT"}},  # the root itself
        {"cgroups": {"pids": "ROOT/x\0y"}},
        {"cgroups": {"pids": "ROOT/missing"}},
    ],
)
async def test_without_a_readable_cgroup_nothing_is_counted_or_raised(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, report: Mapping[str, Any] | None
) -> None:
    root = tmp_path / "cgroup"
    # Counters that would say something, were they read: outside the tree and at its root.
    write(tmp_path / "outside" / "pids.events", "max 9\n")
    write(root / "pids.events", "max 9\n")
    if report is not None and isinstance(report.get("cgroups"), dict):
        report = {
            "cgroups": {
                key: value.replace("ROOT", str(root)) if isinstance(value, str) else value
                for key, value in report["cgroups"].items()
            }
        }
    hits: list[tuple[str, int]] = []
    with trio.move_on_after(5):
        await serve_limit_watch(
            lambda: report, lambda *hit: hits.append(hit), interval=1.0, root=root
        )
    assert hits == []
    assert read_limit_hits(report, root=root) == {}


def test_the_limits_as_numbers_for_gauges() -> None:
    report = {
        "memory": {"limit": 256 * MIB, "enforced_by": "cgroup v1"},
        "pids": {"limit": 64, "enforced_by": "rlimit (RLIMIT_NPROC, set inside)"},
        "cpus": {"limit": 1.0, "enforced_by": None},
    }
    assert limit_numbers(report) == LimitNumbers(256 * MIB, 64)
    # Nothing enforces it, no limit, or not a number: no gauge.
    assert limit_numbers({"memory": {"limit": 5, "enforced_by": None}}) == LimitNumbers()
    assert limit_numbers({"pids": {"limit": None, "enforced_by": "x"}}) == LimitNumbers()
    assert limit_numbers({"pids": {"limit": True, "enforced_by": "x"}}) == LimitNumbers()
    assert limit_numbers({"pids": {"limit": "64", "enforced_by": "x"}}) == LimitNumbers()
    assert limit_numbers({"pids": []}) == LimitNumbers()
    assert limit_numbers(None) == LimitNumbers()
