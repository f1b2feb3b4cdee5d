"""``open_sandbox`` embedded in a program that runs as root and as an ordinary user: the default
sandbox (bubblewrap, no options) starts, serves its tools over mutual TLS on a port published on
the host's loopback, and the files it makes in the workspace belong to the workspace's owner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import trio

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
    with trio.fail_after(60):
        done = await trio.run_process(
            sandbox_user.command(sandbox_user.python, "-c", EMBEDDED, str(workspace)),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=sandbox_user.env({"HOME": str(workspace)}),
            cwd=workspace,
        )
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout.decode().splitlines()[-1])
    assert report["text"].splitlines()[0] == str(sandbox_user.uid)
    assert report["created"]
    # Our tool server is reached over WebSocket on its mutual-TLS endpoint.
    assert report["sandbox_url"].startswith("wss://127.0.0.1:")
    for name in ("from-sandbox.txt", "c.txt"):
        info = (workspace / name).stat()
        assert (info.st_uid, info.st_gid) == (sandbox_user.uid, sandbox_user.gid), name
