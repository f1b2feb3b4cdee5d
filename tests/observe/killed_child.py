"""A host with the audit log on that makes three calls, says so (its warden's pid and the log's
path on one JSON line), and waits to be killed (tests/observe/test_audit_sandbox.py).

    python -m tests.observe.killed_child AUDIT_PATH
"""

from __future__ import annotations

import json
import sys

import trio

from trio_sandbox.sandbox import SandboxConfig, open_sandbox


async def main(audit_path: str) -> None:
    config = SandboxConfig(warm_spares=0, stop_grace=5.0, audit_log=audit_path)
    async with open_sandbox(config) as sandbox:
        for index in range(3):
            await sandbox.call_tool("run_command", {"command": f"echo {index}"})
        print(json.dumps({"warden": sandbox.warden_pid}), flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
