"""How the warden decides to enforce the limits, for the hosts this machine kind is not: cgroup
v2 with delegated controllers, v2 through systemd, and nothing at all (rlimits). The decision is
made against a fake cgroup directory here; the v1 path and the rlimit path run for real in
tests/sandbox/test_sandbox_limits.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_sandbox.contract import CPUS, PIDS, LimitError, ResourceLimits, parse_size
from trio_sandbox.warden import _limits
from trio_sandbox.warden._limits import describe

LIMITS = ResourceLimits(memory=256 * 2**20, pids=100, cpus=1.5, tmp_size=64 * 2**20)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512M", 512 * 2**20), ("2G", 2 * 2**30), ("1.5GiB", 3 * 2**29), ("4096", 4096), ("8k", 8192)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text, "--memory") == size


@pytest.mark.parametrize("text", ["", "two", "-1G", "0", "1Q"])
def test_bad_sizes_name_the_option(text: str) -> None:
    with pytest.raises(LimitError, match="--memory"):
        parse_size(text, "--memory")


def test_bad_cpus_and_pids() -> None:
    with pytest.raises(LimitError, match="--cpus"):
        CPUS.parse("0")
    with pytest.raises(LimitError, match="--pids"):
        PIDS.parse("3")


def test_defaults_are_bounded() -> None:
    defaults = _limits.default_limits()
    assert defaults.memory is not None
    assert defaults.memory <= 4 * 2**30
    assert defaults.pids == 1024
    assert defaults.cpus is not None
    assert defaults.cpus >= 1
    assert defaults.tmp_size is not None
    assert defaults.tmp_size <= defaults.memory


def nothing_v1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_limits, "_v1_dir", lambda controller: None)


def test_cgroup_v2_with_delegated_controllers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nothing_v1(monkeypatch)
    monkeypatch.setattr(_limits, "_v2_dir", lambda: (tmp_path, {"memory", "pids", "cpu"}))
    plan = _limits.plan_limits(LIMITS, as_root=False, prlimit="/usr/bin/prlimit")
    [directory] = tmp_path.iterdir()
    assert directory.name.startswith("trio-sandbox-")
    assert (directory / "memory.max").read_text() == str(256 * 2**20)
    assert (directory / "pids.max").read_text() == "100"
    assert (directory / "cpu.max").read_text() == "150000 100000"
    assert plan.enforcement.memory == plan.enforcement.pids == plan.enforcement.cpus == "cgroup v2"
    assert plan.memory_cgroup == directory
    assert plan.inner_prefix == []
    assert describe(plan)[1:] == []  # no warning: everything is enforced


def test_cgroup_v2_without_the_cpu_controller_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nothing_v1(monkeypatch)
    monkeypatch.setattr(_limits, "_v2_dir", lambda: (tmp_path, {"memory", "pids"}))
    plan = _limits.plan_limits(LIMITS, as_root=False, prlimit="/usr/bin/prlimit")
    assert plan.enforcement.cpus is None
    [summary, warning] = describe(plan)
    assert "cpus 1.5" in summary
    assert warning.startswith("warning: not enforced on this host: cpus")


def test_systemd_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    nothing_v1(monkeypatch)
    monkeypatch.setattr(_limits, "_v2_dir", lambda: None)
    monkeypatch.setattr(_limits, "_systemd_available", lambda as_root: True)
    plan = _limits.plan_limits(LIMITS, as_root=False, prlimit="/usr/bin/prlimit")
    assert plan.outer_prefix[:5] == ["systemd-run", "--scope", "--quiet", "--collect", "--user"]
    assert f"MemoryMax={256 * 2**20}" in plan.outer_prefix
    assert "TasksMax=100" in plan.outer_prefix
    assert "CPUQuota=150%" in plan.outer_prefix
    assert plan.outer_prefix[-1] == "--"
    assert _limits.preexec(plan) is None  # systemd places bwrap: no cgroup to join by hand


def test_nothing_but_rlimits(monkeypatch: pytest.MonkeyPatch) -> None:
    nothing_v1(monkeypatch)
    monkeypatch.setattr(_limits, "_v2_dir", lambda: None)
    monkeypatch.setattr(_limits, "_systemd_available", lambda as_root: False)
    plan = _limits.plan_limits(LIMITS, as_root=False, prlimit="/usr/bin/prlimit")
    assert plan.inner_prefix == ["/usr/bin/prlimit", "--nproc=100", "--"]
    assert plan.enforcement.memory == "rlimit, per command"
    assert plan.enforcement.cpus is None
    assert plan.enforcement.tmp_size == "tmpfs size"
    [_summary, warning] = describe(plan)
    assert "cpus" in warning
    assert "memory for the sandbox as a whole" in warning


def test_unlimited_is_not_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    nothing_v1(monkeypatch)
    monkeypatch.setattr(_limits, "_v2_dir", lambda: None)
    monkeypatch.setattr(_limits, "_systemd_available", lambda as_root: False)
    unlimited = ResourceLimits(memory=None, pids=None, cpus=None, tmp_size=None)
    plan = _limits.plan_limits(unlimited, as_root=False, prlimit=None)
    assert describe(plan) == [
        "limits: memory unlimited, pids unlimited, cpus unlimited, /tmp unlimited"
    ]
