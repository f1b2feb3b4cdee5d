"""The official MCP conformance suite's SERVER scenarios against everything_server.py.

Each test starts the fixture server as a real child process on a free 127.0.0.1 port and runs
``conformance server --suite all`` at one protocol version: every scenario, including the pending
ones and the draft-only ones reachable at that version (stateless lifecycle, MRTR, caching,
header validation). The run must end with no FAILURE and no WARNING check beyond those listed,
each with its reason, in expected-failures-server.yaml.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conformance.child_processes import start_url_printing_child, stop_group

pytestmark = pytest.mark.conformance

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NODE_BIN = REPO / ".tools" / "npm" / "node_modules" / ".bin"
EXPECTED_FAILURES = HERE / "expected-failures-server.yaml"
# Scenarios `--suite all` runs at each version: a run that silently shrinks must fail too.
MIN_SCENARIOS = {"2025-11-25": 33, "2026-07-28": 40}
RUN_DEADLINE_SECONDS = 75.0


async def _start_server(nursery: trio.Nursery) -> tuple[trio.Process, str]:
    process, url = await start_url_printing_child(
        nursery, [sys.executable, str(HERE / "everything_server.py"), "--port", "0"]
    )
    assert url.startswith("http://127.0.0.1:"), url
    return process, url


def _checks(output_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every scenario's checks, by scenario name, from the runner's result directory."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in output_dir.glob("server-*/checks.json"):
        # Directories are named server-<scenario>-<ISO timestamp>.
        scenario = re.sub(r"-\d{4}-\d{2}-\d{2}T[\d-]+Z$", "", path.parent.name)
        found[scenario.removeprefix("server-")] = json.loads(path.read_text())
    return found


@pytest.mark.parametrize("spec_version", ["2025-11-25", "2026-07-28"])
async def test_conformance_server_suite(spec_version: str, tmp_path: Path) -> None:
    conformance = NODE_BIN / "conformance"
    assert conformance.exists(), f"{conformance} is missing: run .ci/install"
    env = {**os.environ, "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    output_dir = tmp_path / "results"
    async with trio.open_nursery() as nursery:
        _, url = await _start_server(nursery)
        argv = [
            str(conformance),
            "server",
            "--url",
            url,
            "--spec-version",
            spec_version,
            "--suite",
            "all",
            "--expected-failures",
            str(EXPECTED_FAILURES),
            "--output-dir",
            str(output_dir),
        ]
        with trio.fail_after(RUN_DEADLINE_SECONDS):
            run = await trio.run_process(
                argv,
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                start_new_session=True,
                deliver_cancel=stop_group,
                cwd=tmp_path,
            )
        nursery.cancel_scope.cancel()
    assert_suite_passed(run, output_dir, MIN_SCENARIOS[spec_version])


def assert_suite_passed(
    run: subprocess.CompletedProcess[bytes], output_dir: Path, min_scenarios: int
) -> None:
    """The suite exited 0, no check failed or warned, and no scenario went missing."""
    report = run.stdout.decode(errors="replace") + run.stderr.decode(errors="replace")
    summary = report[report.find("=== SUMMARY ===") :]
    checks = _checks(output_dir)
    bad = [
        f"{scenario}: {check.get('id')} {check.get('status')} {check.get('errorMessage', '')}"
        for scenario, scenario_checks in sorted(checks.items())
        for check in scenario_checks
        if check.get("status") in ("FAILURE", "WARNING")
    ]
    assert run.returncode == 0, f"conformance exited {run.returncode}\n{summary}\n" + "\n".join(bad)
    assert not bad, "\n".join(bad)
    assert len(checks) >= min_scenarios, summary
