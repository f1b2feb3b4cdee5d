"""The audit log of a real sandbox, as root and as an ordinary user: what an agent did, for
whom, how it ended, the sandbox's life — and none of the secrets the run used."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.support.sandbox_users import SandboxUser
from trio_sandbox.observe import AUDIT_SCHEMA_VERSION

REPO = Path(__file__).resolve().parent.parent.parent
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


@needs_bwrap
async def test_the_audit_log_records_calls_and_the_sandbox_life_without_a_secret(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    report = await sandbox_user.run_json(
        "-m", "tests.observe.observe_child", str(workspace), home=workspace, limit=180
    )
    text = report["audit"]
    for secret in report["secrets"]:
        assert len(secret) >= 8
        assert secret not in text
    assert report["mode"] == 0o600
    assert report["uid"] == report["me"]
    records = [json.loads(line) for line in text.splitlines()]
    assert all(record["v"] == AUDIT_SCHEMA_VERSION for record in records)
    calls = [r for r in records if r["event"] == "tool_call"]
    assert [c["tool"] for c in calls] == [
        "run_command",
        "run_command",
        "generate_password",
        "run_command",
        "view",
        "run_command",
        "run_command",
    ]
    assert [c["outcome"] for c in calls] == ["ok"] * 4 + ["tool_error", "ok", "ok"]
    # The token the client sent is a placeholder in the record; so is the restored password.
    assert "[REDACTED_SECRET:github-pat:" in calls[1]["arguments"]["command"]
    assert "[REDACTED_SECRET:password:" in calls[3]["arguments"]["command"]
    # The remote client by its certificate's fingerprint, in a session of its own.
    remote = calls[5]
    assert remote["client"] == f"certificate:{report['fingerprint']}"
    assert isinstance(remote["session"], str)
    assert len(remote["session"]) == 16
    assert [c["client"] for c in calls if c is not remote] == [None] * 6
    assert [c["generation"] for c in calls] == [1] * 6 + [2]
    life = [(r["phase"], r["generation"]) for r in records if r["event"] == "sandbox"]
    assert life == [
        ("start", 1),
        ("ready", 1),
        ("respawn", 1),
        ("start", 2),
        ("ready", 2),
        ("stop", None),
    ]
    [respawn] = [r for r in records if r["event"] == "sandbox" and r["phase"] == "respawn"]
    assert respawn["reason"] == "restart requested"
    # The metrics scraped over real HTTP say the same: the calls by tool and outcome, the
    # restart, the generation, the placeholders made (the token, the password).
    samples = scraped(report["scrape"])
    calls_total = "trio_sandbox_tool_calls_total"
    assert (
        samples[calls_total, (("outcome", "ok"), ("tool", "run_command"), ("upstream", "sandbox"))]
        == 5
    )
    assert (
        samples[
            calls_total, (("outcome", "ok"), ("tool", "generate_password"), ("upstream", "sandbox"))
        ]
        == 1
    )
    assert (
        samples[calls_total, (("outcome", "tool_error"), ("tool", "view"), ("upstream", "sandbox"))]
        == 1
    )
    assert samples["trio_sandbox_sandbox_respawns_total", (("sandbox", "sandbox"),)] == 1
    assert samples["trio_sandbox_sandbox_starts_total", (("sandbox", "sandbox"),)] == 2
    assert samples["trio_sandbox_sandbox_generation", ()] == 2
    assert samples["trio_sandbox_sandbox_pids", ()] >= 1
    placeholders = sum(
        value
        for (name, _), value in samples.items()
        if name == "trio_sandbox_redaction_placeholders_total"
    )
    assert placeholders >= 2
    for secret in report["secrets"]:
        assert secret not in report["scrape"]


def scraped(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text scrape, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@needs_bwrap
async def test_records_are_on_disk_as_they_happen_and_a_killed_host_leaves_them_whole(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    audit = Path(workspace) / "audit.jsonl"
    process = await trio.lowlevel.open_process(
        sandbox_user.python_module("tests.observe.killed_child", str(audit)),
        stdout=subprocess.PIPE,
        env=sandbox_user.env({"HOME": str(workspace)}),
        cwd=REPO,
    )
    assert process.stdout is not None
    try:
        with trio.fail_after(120):
            said = b""
            while not said.endswith(b"\n"):
                chunk = await process.stdout.receive_some()
                assert chunk, "the host ended before its calls"
                said += chunk
        warden = os.pidfd_open(json.loads(said)["warden"])
        # The calls' records are in the file before the host is gone: nothing waits in a buffer.
        before = audit.read_text()
        process.kill()  # SIGKILL: no finally, no flush
        await process.wait()
        # The warden (and with it the sandbox) follows its host (the lifeline).
        with trio.fail_after(30):
            await trio.lowlevel.wait_readable(warden)
        os.close(warden)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.stdout.aclose()
    after = audit.read_text()
    assert after == before  # nothing written after the kill, nothing lost before it
    records = [json.loads(line) for line in after.splitlines()]  # every line whole
    calls = [r for r in records if r["event"] == "tool_call"]
    assert [c["arguments"]["command"] for c in calls] == ["echo 0", "echo 1", "echo 2"]
    assert [r["phase"] for r in records if r["event"] == "sandbox"] == ["start", "ready"]
