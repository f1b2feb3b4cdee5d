"""A program embedding ``open_sandbox`` with ``network = allow`` and the audit log on, run as
root and as the ordinary user, that runs real clients in the sandbox and prints one JSON line:
what each command printed and every egress record of the audit log (one per connection the
warden reported).

Plan on stdin: ``{"allow": [...], "commands": [...]}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio

from trio_sandbox.sandbox import SandboxConfig, open_sandbox


async def main() -> None:
    plan = json.loads(sys.stdin.read())
    audit = Path.cwd() / "audit.jsonl"
    config = SandboxConfig(
        network="allow", allow_domains=plan["allow"], stop_grace=5.0, audit_log=str(audit)
    )
    outputs = []
    async with open_sandbox(config) as sandbox:
        for command in plan["commands"]:
            result = await sandbox.call_tool("run_command", {"command": command})
            outputs.append(result.text_content)
            # Each command's records before the next command's (an allowed connection's
            # comes as it closes, a moment after the client has its answer).
            await trio.sleep(0.3)
        # The window's sums, if there were any, come when it ends.
        await trio.sleep(1.5)
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    records = [line for line in lines if line["event"] == "egress"]
    print(json.dumps({"outputs": outputs, "records": records}))


trio.run(main)
