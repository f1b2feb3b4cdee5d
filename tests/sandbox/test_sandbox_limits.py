"""Limits on the whole sandbox, as root and as an ordinary user, with the real warden and tool
server: a command over a limit fails — not the host, not the sandbox — and says why; the next
call works on the same sandbox; ``status`` shows the limits in force and the current usage.

On this machine kind root gets cgroup v1 for memory, processes and CPU; an ordinary user gets no
cgroup (v1 is root's, and there is no systemd), so rlimits set inside the sandbox bound the
processes and each command's memory, CPU is not bounded, and the warden says so once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.sandbox_users import SandboxUser

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

CHILD = Path(__file__).with_name("limits_child.py")
MIB = 2**20

ALLOCATE = 'python3 -c "x = bytearray(400 * 1024 * 1024); print(len(x))"'
FORK_BOMB = r"""python3 -c '
import errno, os, time
children = []
try:
    for _ in range(500):
        pid = os.fork()
        if pid == 0:
            time.sleep(1)
            os._exit(0)
        children.append(pid)
except OSError as exc:
    print("stopped at", len(children), errno.errorcode[exc.errno])
for pid in children:
    os.waitpid(pid, 0)
'"""
FILL_TMP = "dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1; rm -f /tmp/fill"


async def run_child(user: SandboxUser, home: Path, limits: dict[str, str], *commands: str) -> Any:
    with trio.fail_after(120):
        done = await trio.run_process(
            user.command(user.python, str(CHILD), json.dumps(limits), *commands),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=user.env({"HOME": str(home)}),
            cwd=home,
        )
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout.decode().splitlines()[-1])


async def test_memory_limit(sandbox_user: SandboxUser, workspace: Path) -> None:
    report = await run_child(sandbox_user, workspace, {"memory": "256M"}, ALLOCATE, "echo next")
    over, after = report["results"]
    if sandbox_user.is_root:
        assert over["text"].splitlines()[-1] == "[killed: memory limit 256 MiB reached]"
    else:  # per command, as an rlimit: the allocation fails instead
        assert "MemoryError" in over["text"]
        assert over["text"].splitlines()[-1] == "[exit code 1]"
    assert after["text"] == "next\n[exit code 0]"
    assert report["generation"] == 1  # the tool server survived: the command was the victim
    memory = report["status"]["limits"]["memory"]
    assert memory["limit"] == 256 * MIB
    expected = "cgroup v1" if sandbox_user.is_root else "rlimit, per command"
    assert memory["enforced_by"] == expected


async def test_fork_bomb_stops_at_pids(sandbox_user: SandboxUser, workspace: Path) -> None:
    report = await run_child(sandbox_user, workspace, {"pids": "64"}, FORK_BOMB, "echo next")
    bomb, after = report["results"]
    first = bomb["text"].splitlines()[0].split()
    assert first[:2] == ["stopped", "at"], bomb["text"]
    assert int(first[2]) < 64
    assert first[3] == "EAGAIN"
    assert after["text"] == "next\n[exit code 0]"
    assert report["generation"] == 1


async def test_tmp_is_bounded(sandbox_user: SandboxUser, workspace: Path) -> None:
    report = await run_child(sandbox_user, workspace, {"tmp_size": "16M"}, FILL_TMP, "echo next")
    fill, after = report["results"]
    assert "No space left on device" in fill["text"]
    assert after["text"] == "next\n[exit code 0]"


async def test_status_shows_limits_usage_and_what_is_not_enforced(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    report = await run_child(
        sandbox_user, workspace, {"memory": "1G", "pids": "200", "cpus": "1"}, "sleep 0"
    )
    status = report["status"]
    limits = status["limits"]
    assert limits["memory"]["limit"] == 1024 * MIB
    assert limits["pids"]["limit"] == 200
    assert limits["cpus"]["limit"] == 1.0
    usage = status["usage"]
    assert 10 * MIB < usage["memory_bytes"] < 1024 * MIB  # a tool server's worth, at least
    assert 1 <= usage["pids"] < 200
    not_enforced = [line for line in report["warnings"] if "not enforced" in line]
    if sandbox_user.is_root:
        assert limits["cpus"]["enforced_by"] == "cgroup v1"
        assert not_enforced == []
    else:
        assert limits["cpus"]["enforced_by"] is None
        [warning] = not_enforced
        assert "cpus" in warning
        assert "memory for the sandbox as a whole" in warning
