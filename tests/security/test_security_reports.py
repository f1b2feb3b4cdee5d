"""The warden's reports travel where the sandbox cannot write (finding: forged ``limits``, usage
read from a directory the sandbox named, a replaced egress audit).

The code in the sandbox writes forged reports, in every form the host ever read, into every pipe
it can open through /proc (the warden's stderr among them: every process in the sandbox inherits
it). The host reads its reports only from the pipe it passed the warden (``--report-fd``), which
no process in the sandbox holds, so ``status`` (limits, usage, the egress audit) and the host's
warnings are what the warden said; the next call works. Real bubblewrap sandboxes, as root and as
the ordinary user; podman (root) for the warden's channel.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.kubernetes.kube_double import open_kube_double
from tests.kubernetes.kube_harness import IMAGE as POD_IMAGE
from tests.security.reports_probes import (
    FORGE,
    FORGED_MEMORY,
    FORGED_NAME,
    FORGED_PIDS,
    FORGED_WARNING,
    HELLO,
    serving_hello,
)
from tests.security.reports_warden import run_warden_with_report_fd
from tests.support.sandbox_users import SandboxUser
from tests.warden.test_warden_podman import IMAGE, _image_present
from tests.warden.warden_harness import HANG_GUARD_SECONDS, ROOT_OR_SELF, wrap
from trio_sandbox.sandbox import SandboxConfig, open_sandbox

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

CHILD = Path(__file__).with_name("reports_child.py")
ORIGIN_HOST = "127.0.0.2"


async def run_host(
    user: SandboxUser, home: Path, config: dict[str, Any], *commands: str
) -> dict[str, Any]:
    """``reports_child.py`` as ``user``: a host embedding open_sandbox."""
    report: dict[str, Any] = await user.run_json(
        str(CHILD),
        json.dumps({"config": config}),
        *commands,
        home=home,
        limit=HANG_GUARD_SECONDS * 2,
    )
    return report


def forge_command(workspace: Path) -> str:
    return f"python3 -c {shlex.quote(FORGE)} {workspace}"


async def test_forged_reports_change_neither_status_nor_warnings(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    async with serving_hello(ORIGIN_HOST) as port:
        allowed = f"{ORIGIN_HOST}:{port}"
        fetch = f"curl -sS --fail http://{allowed}/"
        config = {
            "network": "allow",
            "allow_domains": [allowed],
            "volumes": [f"{workspace}:/work"],
            "memory": "512M",
            "pids": "300",
        }
        report = await run_host(
            sandbox_user, workspace, config, fetch, forge_command(workspace), "echo next", fetch
        )
    first_fetch, forge, after, second_fetch = report["results"]
    assert first_fetch["text"] == HELLO.decode() + "[exit code 0]"
    forged = json.loads(forge["text"].splitlines()[-2])
    # The attack reached the warden's stderr (through the tool server's inherited fd 2, at
    # least): it is a real attack, not one that found nothing to write to.
    assert len(forged["written"]) >= 2, forge["text"]
    before, after_fetch, after_forge, after_next, end = report["statuses"]

    # The limits are the warden's, unchanged, and usage was read from the real place.
    assert after_forge["limits"] == after_fetch["limits"] == before["limits"]
    assert before["limits"]["memory"]["limit"] == 512 * 2**20
    assert "forged" not in json.dumps(end["limits"])
    for status in (after_forge, after_next, end):
        usage = status["usage"]
        assert usage["source"] == before["usage"]["source"]
        assert usage["memory_bytes"] != FORGED_MEMORY
        assert usage["pids"] != FORGED_PIDS
        assert 1 <= usage["pids"] < 300

    # The egress audit counts what the proxy decided: the two fetches, nothing forged.
    network = end["network"]
    assert network["destinations"] == {allowed: network["destinations"][allowed]}
    assert network["destinations"][allowed]["allowed"] == 2
    assert network["rules"][allowed]["allowed"] == 2
    assert FORGED_NAME not in json.dumps(network)
    assert network["totals"]["allowed"] == 2
    assert after_forge["network"]["destinations"] == after_fetch["network"]["destinations"]

    # The forged warning reached the host's log only as untrusted INFO text, never a warning.
    assert not [line for line in report["warnings"] if FORGED_WARNING in line]
    # And the sandbox serves on.
    assert after["text"] == "next\n[exit code 0]"
    assert second_fetch["text"] == HELLO.decode() + "[exit code 0]"
    assert report["generation"] == 1


def assert_only_the_wardens_reports(lines: list[str], enforced_by: str) -> None:
    assert lines, "the warden reported nothing"
    kinds = []
    for line in lines:
        message = json.loads(line)
        assert isinstance(message, dict), line
        assert len(message) == 1, line
        kinds.append(next(iter(message)))
        assert "forged" not in line.lower(), line
    assert kinds[0] == "limits"
    assert set(kinds) <= {"limits", "warning", "egress"}
    limits = json.loads(lines[0])["limits"]
    assert limits["pids"]["enforced_by"] == enforced_by


async def test_the_report_channel_is_out_of_the_sandboxs_reach(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    result, lines, inode = await run_warden_with_report_fd(
        sandbox_user,
        "-v",
        f"{workspace}:/work",
        "--pids",
        "200",
        command=[sandbox_user.python, "-c", FORGE, str(workspace)],
    )
    assert result.returncode == 0, result.stderr.decode()
    forged = json.loads(result.stdout.decode().splitlines()[-1])
    # No process in the sandbox holds the report pipe, and its lines are the warden's alone.
    assert f"pipe:[{inode}]" not in forged["pipes"]
    expected = "cgroup v1" if sandbox_user.is_root else "rlimit (RLIMIT_NPROC, set inside)"
    assert_only_the_wardens_reports(lines, expected)
    if not sandbox_user.switch:
        # The forged lines went where the sandbox can write: the warden's stderr (a log).
        # (Switched to the ordinary user, the test's own stdio pipes are root's: unopenable.)
        assert forged["written"], result.stdout
        assert FORGED_WARNING in result.stderr.decode()


@pytest.mark.skipif(not _image_present(), reason=f"needs podman and {IMAGE} (.ci/install-podman)")
async def test_podman_cannot_reach_the_report_channel(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    result, lines, inode = await run_warden_with_report_fd(
        ROOT_OR_SELF,
        "--backend",
        "podman",
        "-v",
        f"{workspace}:/work",
        image=IMAGE,
        command=["python3", "-c", FORGE, str(workspace)],
    )
    assert result.returncode == 0, result.stderr.decode()
    forged = json.loads(result.stdout.decode().splitlines()[-1])
    assert forged["written"], result.stdout
    assert f"pipe:[{inode}]" not in forged["pipes"]
    assert_only_the_wardens_reports(lines, "podman (container cgroup)")


async def test_a_bad_report_fd_is_a_usage_error() -> None:
    for value in ("2", "x", "987"):
        result = await wrap("--report-fd", value, command=["true"])
        assert result.returncode == 2, result
        assert b"--report-fd" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the kubernetes double's Pods run as uid 65534")
async def test_a_pod_cannot_forge_the_kubernetes_wardens_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kubernetes warden runs on the host too and reports on the same channel; the Pod's
    log (which the warden copies to its stdout and stderr) is only ever logged."""
    async with open_kube_double(tmp_path) as double:
        monkeypatch.setenv("KUBECONFIG", str(double.kubeconfig))
        monkeypatch.setenv("TRIO_SANDBOX_K8S_PYTHON", sys.executable)
        monkeypatch.setenv("TRIO_SANDBOX_K8S_START_TIMEOUT", "30")
        config = SandboxConfig(backend="kubernetes", image=POD_IMAGE, memory="512M")
        async with open_sandbox(config) as sandbox:
            before: dict[str, Any] = json.loads(json.dumps(sandbox.status()))
            command = f"python3 -c {shlex.quote(FORGE)}"
            forge = await sandbox.call_tool("run_command", {"command": command})
            assert json.loads(forge.text_content.splitlines()[-2])["written"], forge.text_content
            after = sandbox.status()
            next_call = await sandbox.call_tool("run_command", {"command": "echo next"})
    assert before["limits"]["memory"]["limit"] == 512 * 2**20
    assert after["limits"] == before["limits"]
    assert "forged" not in json.dumps(after["limits"])
    assert FORGED_NAME not in json.dumps(after["network"])
    assert next_call.text_content == "next\n[exit code 0]"
