"""The official MCP conformance suite's CLIENT leg against everything_client.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO / ".tools" / "npm" / "node_modules" / ".bin"
CLIENT = REPO / "tests" / "conformance" / "everything_client.py"
EXPECTED_FAILURES = REPO / "tests" / "conformance" / "expected-failures-client.yaml"

pytestmark = pytest.mark.conformance


def _run_client_suite(spec_version: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # Node 22 first: the system's older node crashes the suite.
    env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{env.get('PATH', '')}"
    conformance = shutil.which("conformance", path=env["PATH"])
    if conformance is None:
        pytest.fail(f"the conformance CLI is not installed in {TOOLS_BIN} (run .ci/install)")
    command = f"{sys.executable} {CLIENT}"
    return subprocess.run(
        [
            conformance,
            "client",
            "--command",
            command,
            "--suite",
            "all",
            "--spec-version",
            spec_version,
            "--expected-failures",
            str(EXPECTED_FAILURES),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize("spec_version", ["2025-11-25", "2026-07-28"])
def test_client_suite_passes(spec_version: str) -> None:
    result = _run_client_suite(spec_version)
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    summary = re.search(r"Total: (\d+) passed, (\d+) failed, (\d+) warnings", output)
    assert summary is not None, output[-6000:]
    passed_scenarios = re.findall(r"^✓ (\S+):", output, re.MULTILINE)
    failed_scenarios = re.findall(r"^✗ (\S+):", output, re.MULTILINE)
    assert result.returncode == 0, output[-6000:]
    assert "Baseline check passed" in output, output[-6000:]
    assert failed_scenarios == [], output[-6000:]
    # The non-auth scenarios of the version really ran and passed.
    expected = {"tools_call", "json-schema-2020-12-preservation"}
    if spec_version == "2025-11-25":
        expected |= {"initialize", "elicitation-sep1034-client-defaults", "sse-retry"}
    else:
        expected |= {
            "request-metadata",
            "sep-2322-client-request-state",
            "http-standard-headers",
            "http-custom-headers",
            "http-invalid-tool-headers",
            "json-schema-ref-no-deref",
        }
    assert expected <= set(passed_scenarios), output[-6000:]
    # The OAuth scenarios of the version ran and passed too (tests/conformance/
    # everything_client.py authorizes with trio_sandbox.oauth).
    auth = {
        "auth/metadata-default",
        "auth/metadata-var1",
        "auth/metadata-var2",
        "auth/metadata-var3",
        "auth/basic-cimd",
        "auth/scope-from-www-authenticate",
        "auth/scope-from-scopes-supported",
        "auth/scope-omitted-when-undefined",
        "auth/scope-step-up",
        "auth/scope-retry-limit",
        "auth/token-endpoint-auth-basic",
        "auth/token-endpoint-auth-post",
        "auth/token-endpoint-auth-none",
        "auth/pre-registration",
    }
    if spec_version == "2026-07-28":
        auth |= {
            "auth/resource-mismatch",
            "auth/offline-access-scope",
            "auth/offline-access-not-supported",
            "auth/authorization-server-migration",
            "auth/iss-supported",
            "auth/iss-not-advertised",
            "auth/iss-supported-missing",
            "auth/iss-wrong-issuer",
            "auth/iss-unexpected",
            "auth/iss-normalized",
            "auth/metadata-issuer-mismatch",
        }
    assert auth <= set(passed_scenarios), sorted(auth - set(passed_scenarios))
