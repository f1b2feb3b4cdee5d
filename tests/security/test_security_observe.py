"""The audit log, the metrics and the errors a client gets, attacked (as root and as an
ordinary user, real bubblewrap): a host secret put in a tool name, a resource URI and a host
name the sandbox connects to never shows in any of them; report lines the sandbox forges on its
own streams become no record; a flood of refused connections is recorded whole, without the
secret, in a bounded number of lines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.sandbox_users import SandboxUser

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


@needs_bwrap
async def test_no_secret_and_no_forged_record_reaches_the_audit_log_or_the_metrics(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    report = await sandbox_user.run_json(
        "-m", "tests.security.observe_child", str(workspace), home=workspace, limit=180
    )
    secret = report["secret"]
    for channel in ("audit", "scrape"):
        assert secret not in report[channel], channel
    assert all(secret not in error for error in report["errors"])
    assert len(report["errors"]) == 2  # the unknown tool and the unknown resource
    records = [json.loads(line) for line in report["audit"].splitlines()]
    # The sandbox's forged report lines made no record (the command that printed them is one).
    egress = [r for r in records if r["event"] == "egress"]
    assert all("forged" not in r["target"] for r in egress)
    assert "forged.example" not in report["scrape"]
    # The model's names are in their records, redacted.
    names = [r.get("tool") or r.get("uri") for r in records if r["event"] != "sandbox"]
    assert any(name and "[REDACTED_SECRET:env:OBSERVED_SECRET:" in name for name in names)
    # Every refused connection is counted once, its target redacted, in few lines.
    refused = [r for r in egress if r["verdict"] == "refused"]
    assert refused == egress  # nothing was allowed: no forged "allowed" line counted
    assert sum(r["count"] for r in refused) == 30
    assert len(refused) <= 30
    assert all("[REDACTED_SECRET:env:OBSERVED_SECRET:" in r["target"] for r in refused)
    # The metrics agree, and the made-up tool name is no label.
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(report["scrape"])
        for sample in family.samples
    }
    assert samples["trio_sandbox_egress_connections_total", (("verdict", "refused"),)] == 30
    assert samples["trio_sandbox_egress_connections_total", (("verdict", "allowed"),)] == 0
    unrouted = (("outcome", "failed"), ("tool", "(unrouted)"), ("upstream", "(none)"))
    assert samples["trio_sandbox_tool_calls_total", unrouted] == 1
