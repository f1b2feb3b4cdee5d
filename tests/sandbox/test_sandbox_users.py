"""``open_sandbox`` embedded in a program that runs as root and as an ordinary user: the default
sandbox (bubblewrap, no options) starts, serves its tools over mutual TLS on a port published on
the host's loopback, and the files it makes in the workspace belong to the workspace's owner."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.sandbox_users import SandboxUser

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

EMBEDDED = r"""
import json, sys
import trio
from trio_sandbox import SandboxConfig, open_sandbox

async def main():
    config = SandboxConfig(volumes=[sys.argv[1] + ":/work"])
    async with open_sandbox(config) as sandbox:
        result = await sandbox.call_tool(
            "run_command", {"command": "id -u; echo hi > /work/from-sandbox.txt; ls /work"}
        )
        created = await sandbox.call_tool("create", {"path": "/work/c.txt", "file_text": "c"})
        print(json.dumps({
            "text": result.text_content,
            "created": not created.is_error,
            "sandbox_url": sandbox.sandbox_url,
            "proxy_url": sandbox.proxy_url,
        }))

trio.run(main)
"""


async def test_open_sandbox_works_with_defaults_for_both_users(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    report = await sandbox_user.run_json("-c", EMBEDDED, str(workspace), home=workspace, limit=60)
    assert report["text"].splitlines()[0] == str(sandbox_user.uid)
    assert report["created"]
    # Our tool server is reached over WebSocket on its mutual-TLS endpoint.
    assert report["sandbox_url"].startswith("wss://127.0.0.1:")
    for name in ("from-sandbox.txt", "c.txt"):
        info = (workspace / name).stat()
        assert (info.st_uid, info.st_gid) == (sandbox_user.uid, sandbox_user.gid), name


# What an instrumented interpreter (``opentelemetry-instrument``: a sitecustomize on PYTHONPATH)
# does to every Python the program starts, the warden included: its SDK restarts an export
# thread in every forked child. A child with a second thread cannot enter or make a user
# namespace, which the warden's helpers must (id maps as root, the sandbox's network namespace
# as an ordinary user).
INSTRUMENTED_SITE = """
import os, sys
if any("trio_sandbox.warden" in arg for arg in sys.orig_argv):
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    sys.trio_sandbox_test_processor = BatchSpanProcessor(ConsoleSpanExporter())
    open(os.path.join(os.path.dirname(__file__), "instrumented-warden"), "w").close()
"""


IDMAPPED_MOUNTS = r"""
import json, sys
import trio
from trio_sandbox import SandboxConfig, open_sandbox

async def main():
    async with open_sandbox(SandboxConfig(volumes=[sys.argv[1] + ":/work"])) as sandbox:
        result = await sandbox.call_tool(
            "run_command", {"command": "id -u; grep -c idmapped /proc/self/mountinfo || true"}
        )
        print(json.dumps(result.text_content.split()[:2]))

trio.run(main)
"""


async def test_a_warden_in_an_instrumented_python_keeps_its_isolation_for_both_users(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    site = workspace / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(INSTRUMENTED_SITE)
    os.chown(site, sandbox_user.uid, sandbox_user.gid)
    instrumented = {"PYTHONPATH": str(site)}
    uid, idmapped_mounts = await sandbox_user.run_json(
        "-c", IDMAPPED_MOUNTS, str(workspace), home=workspace, limit=60, env=instrumented
    )
    assert (site / "instrumented-warden").exists()  # the warden did run it
    assert uid == str(sandbox_user.uid)  # served over its published port
    # As root the host's trees are id-mapped; an ordinary user's sandbox has a user namespace.
    assert (int(idmapped_mounts) > 0) == sandbox_user.is_root
