"""The official conformance suite's active server scenarios, through the proxy.

The proxy fronts tests/conformance/everything_server.py (a real child process) with an EMPTY
prefix, so the suite sees the fixture's own names; every active scenario must pass at both spec
versions, whatever era the proxy's upstream session speaks. Results are read with the helpers of
tests/conformance/test_conformance_server.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import trio

from tests.conformance.child_processes import start_url_printing_child, stop_group
from tests.conformance.test_conformance_server import assert_suite_passed
from tests.proxy.proxy_harness import (
    EVERYTHING_SERVER,
    NODE_BIN,
    proxy_running,
)
from trio_sandbox.mcp import HttpSettings
from trio_sandbox.proxy import HttpFace, HttpUpstream

pytestmark = pytest.mark.conformance

# Active scenarios at each version (the suite is cumulative): a run that shrinks must fail.
MIN_SCENARIOS = {"2025-11-25": 31, "2026-07-28": 19}
RUN_DEADLINE_SECONDS = 120.0


@pytest.mark.parametrize(
    "upstream_era",
    [None, "2025-11-25"],
)
@pytest.mark.parametrize("spec_version", ["2025-11-25", "2026-07-28"])
async def test_conformance_suite_through_the_proxy(
    spec_version: str, upstream_era: str | None, tmp_path: Path
) -> None:
    conformance = NODE_BIN / "conformance"
    assert conformance.exists(), f"{conformance} is missing: run .ci/install"
    env = {**os.environ, "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    output_dir = tmp_path / "results"
    async with trio.open_nursery() as nursery:
        _, upstream_url = await start_url_printing_child(
            nursery, [sys.executable, str(EVERYTHING_SERVER), "--port", "0"]
        )
        upstream = HttpUpstream(
            "everything", upstream_url, prefix="", protocol_version=upstream_era
        )
        face = HttpFace(plain=True, settings=HttpSettings(sse_retry_ms=500))
        async with proxy_running([upstream], face) as proxy:
            argv = [
                str(conformance),
                "server",
                "--url",
                proxy.http_url,
                "--spec-version",
                spec_version,
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
            statuses = proxy.statuses()
        nursery.cancel_scope.cancel()
    assert_suite_passed(run, output_dir, MIN_SCENARIOS[spec_version])
    assert [status.connected for status in statuses] == [True]
