"""``network = "allow"`` through ``open_sandbox``: the real warden, tool server and egress proxy.

A command's result names what the proxy refused while it ran; ``status()`` counts every
decision per destination; a respawned sandbox gets its proxy again; and after the sandbox is
gone, nothing of the proxy remains (no process, no task).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
import trio

from tests.egress.egress_harness import HELLO, serving_site
from tests.sandbox.sandbox_fakes import all_tasks
from tests.sandbox.test_sandbox_bwrap_e2e import processes_with
from trio_sandbox.sandbox import SandboxConfig, SandboxRestarted, open_sandbox

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

ORIGIN_HOST = "127.0.0.2"


async def test_refusals_in_results_counted_in_status_and_kept_across_a_respawn(
    tmp_path: Path,
) -> None:
    marker = f"trio-sandbox-egress-{uuid.uuid4().hex}"
    tasks_before = all_tasks()
    async with serving_site(tmp_path, host=ORIGIN_HOST) as origins:
        allowed = f"{ORIGIN_HOST}:{origins.http}"
        config = SandboxConfig(
            network="allow",
            allow_domains=[allowed],
            env={"TRIO_SANDBOX_E2E_MARK": marker},
            stop_grace=5.0,
        )
        with trio.fail_after(90):
            async with open_sandbox(config) as sandbox:
                fetch = f"curl -sS --fail http://{allowed}/hello.txt"
                result = await sandbox.call_tool("run_command", {"command": fetch})
                assert result.text_content == HELLO.decode() + "[exit code 0]"

                refused = (
                    f"curl -sS http://127.0.0.3:{origins.http}/x; curl -sS http://nope.invalid/"
                )
                result = await sandbox.call_tool("run_command", {"command": refused})
                notes = result.text_content.splitlines()[-2:]
                assert notes[0].startswith(
                    f"[network] refused: 127.0.0.3:{origins.http} (not in allow_domains;"
                )
                assert notes[1] == "[network] refused: nope.invalid:80 (not in allow_domains)"

                # Another command's result carries only its own refusals.
                result = await sandbox.call_tool("run_command", {"command": "echo quiet"})
                assert result.text_content == "quiet\n[exit code 0]"

                network = sandbox.status()["network"]
                assert isinstance(network, dict)
                assert network["mode"] == "allow"
                assert network["allow_domains"] == [allowed]
                # The audit comes on the warden's report channel: allowed destinations, refused
                # ones and allow-list entries in tables of their own.
                assert network["destinations"][allowed]["allowed"] == 1
                assert network["rules"][allowed]["allowed"] == 1
                assert network["refused"]["nope.invalid:80"] == {
                    "allowed": 0,
                    "refused": 1,
                    "failed": 0,
                    "bytes_sent": 0,
                    "bytes_received": 0,
                    "last_refusal": "not in allow_domains",
                }
                assert network["totals"]["refused"] == 2

                # The tool server is the parent of the command's keeper.
                kill = 'kill -9 "$(cut -d" " -f4 /proc/$PPID/stat)"; sleep 5'
                with pytest.raises(SandboxRestarted):
                    await sandbox.call_tool("run_command", {"command": kill})
                result = await sandbox.call_tool("run_command", {"command": fetch})
                assert result.text_content == HELLO.decode() + "[exit code 0]"
                assert sandbox.health.generation == 2
    # The proxy lived in the warden: with it gone, nothing of ours is left.
    assert processes_with(marker) == []
    assert all_tasks() == tasks_before
