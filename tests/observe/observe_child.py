"""A program that embeds open_sandbox (real warden, bubblewrap and tool server) with the audit
log on, drives it as an agent would (local calls, a remote client over mutual TLS, a restart),
tries to get secrets into the record, and prints what it saw as one JSON document on its last
line, so that the tests can run it as root and as an ordinary user.

    python -m tests.observe.observe_child WORKSPACE
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives import serialization

from trio_sandbox.mcp import open_mcp_client
from trio_sandbox.redact import PLACEHOLDER
from trio_sandbox.sandbox import SandboxConfig, open_sandbox

# Made up, of shapes the rules know (a GitHub token) and do not (a host variable's value).
TOKEN = "ghp_" + "Xk4pR7vL2qN9wB3mT8yC1dF5hJ6sA0gE2uZ4"
ENV_SECRET = "s3cr3t-value-" + "only-the-host-knows-0417"


async def scenario(workspace: Path) -> dict[str, Any]:
    # Outside the sandbox's writable volume: the code it records must not rewrite it.
    audit_path = Path(tempfile.mkdtemp(prefix="audit-")) / "audit.jsonl"
    os.environ["AUDIT_ENV_SECRET"] = ENV_SECRET
    config = SandboxConfig(
        volumes=[f"{workspace}:/work"],
        stop_grace=5.0,
        warm_spares=0,
        secret_env=["AUDIT_ENV_SECRET"],
        audit_log=str(audit_path),
        metrics_listen="127.0.0.1:0",
    )
    async with open_sandbox(config) as sandbox:
        await sandbox.call_tool("run_command", {"command": "echo $AUDIT_ENV_SECRET"})
        await sandbox.call_tool("run_command", {"command": f"echo {TOKEN} {ENV_SECRET}"})
        password = await sandbox.call_tool("generate_password", {})
        [placeholder] = [m[0] for m in PLACEHOLDER.finditer(password.text_content)]
        # Restored on the way in: the sandbox writes the real password where the host reads it.
        await sandbox.call_tool("run_command", {"command": f"printf %s '{placeholder}' > /work/pw"})
        await sandbox.call_tool("view", {"path": "/nonexistent/file"})
        async with open_mcp_client(
            sandbox.proxy_url,
            ssl_context=sandbox.chain.client_ssl_context(),
            protocol_version="2025-11-25",  # an era with sessions
        ) as remote:
            await remote.call_tool("run_command", {"command": "true"})
        await sandbox.restart()
        await sandbox.call_tool("run_command", {"command": "echo again"})
        url = sandbox.proxy.server.observer.metrics_url
        assert url is not None
        scrape = await trio.to_thread.run_sync(scrape_metrics, url)
        der = sandbox.chain.client.certificate.public_bytes(serialization.Encoding.DER)
        fingerprint = hashlib.sha256(der).hexdigest()
    info = audit_path.stat()
    audit = audit_path.read_text()
    shutil.rmtree(audit_path.parent)
    return {
        "audit": audit,
        "mode": info.st_mode & 0o777,
        "uid": info.st_uid,
        "me": os.geteuid(),
        "fingerprint": fingerprint,
        "secrets": [TOKEN, ENV_SECRET, (workspace / "pw").read_text()],
        "scrape": scrape,
    }


def scrape_metrics(url: str) -> str:
    """``url``'s body, read with the standard library's client: the ordinary user's interpreter
    has no test extras."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text: str = response.read().decode()
        return text


async def main(workspace: Path) -> None:
    with trio.fail_after(150):
        report = await scenario(workspace)
    print(json.dumps(report))


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]))
