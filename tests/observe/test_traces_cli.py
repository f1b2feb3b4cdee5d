"""Traces end to end: ``trio-sandbox call --traces`` (a real sandbox) exports its spans over
OTLP/HTTP to a real receiver, as root and as an ordinary user: the call's span with its
``upstream`` and ``redact`` children, the sandbox's start, the trace the audit log names — and
no secret anywhere in what was sent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.cli_harness import run_cli
from tests.observe.otlp_receiver import open_otlp_receiver
from tests.support.sandbox_users import SandboxUser

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

SECRET = "trace-secret-" + "value-2d81f0c9a7"
TOKEN = "ghp_" + "Lm2nB8vC4xZ6qW1eR9tY3uI7oP5aS0dF2gH4"


@needs_bwrap
async def test_call_exports_its_spans_and_no_secret(
    sandbox_user: SandboxUser, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_otlp_receiver() as receiver:
        for name, value in receiver.environment.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "traced-sandbox")
        monkeypatch.setenv("TRACED_SECRET", SECRET)
        audit = workspace / "audit.jsonl"
        command = f"echo $TRACED_SECRET {TOKEN}"
        done = await run_cli(
            [
                "call",
                "--traces",
                "--audit-log",
                str(audit),
                "--secret-env",
                "TRACED_SECRET",
                "run_command",
                json.dumps({"command": command}),
            ],
            home=workspace,
            user=sandbox_user,
        )
        assert done.returncode == 0, done.stderr
        assert SECRET not in done.stdout
        # The CLI shuts its provider down (sending what is queued) before it exits.
        spans = list(receiver.spans)
        bodies = b"".join(request.body for request in receiver.requests)
    [call] = [span for span in spans if span.name == "tools/call run_command"]
    assert call.kind == "SERVER"
    assert call.service_name == "traced-sandbox"
    assert call.attributes["trio_sandbox.upstream"] == "sandbox"
    children = {span.name: span for span in spans if span.parent_span_id == call.span_id}
    assert set(children) == {"upstream", "redact"}
    assert children["upstream"].kind == "CLIENT"
    assert all(child.trace_id == call.trace_id for child in children.values())
    assert any(span.name == "sandbox start" for span in spans)
    [record] = [
        line
        for line in map(json.loads, audit.read_text().splitlines())
        if line["event"] == "tool_call"
    ]
    assert record["trace_id"] == call.trace_id
    for secret in (SECRET, TOKEN):
        assert secret.encode() not in bodies
        assert secret not in audit.read_text()
