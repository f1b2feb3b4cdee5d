"""A program embedding ``open_sandbox`` with ``network = allow``, run as root and as the ordinary
user, that hands every connection record the warden reports (``LaunchHooks.on_egress``) to a
list, runs real clients in the sandbox, and prints one JSON line: what each command printed and
every record (``EgressRecord.to_json()``).

Plan on stdin: ``{"allow": [...], "commands": [...]}``.
"""

from __future__ import annotations

import json
import sys

import attrs
import trio

from trio_sandbox.observe import EgressRecord
from trio_sandbox.sandbox import (
    Launched,
    LaunchHooks,
    SandboxConfig,
    open_sandbox,
    warden_launcher,
)


async def main() -> None:
    plan = json.loads(sys.stdin.read())
    records: list[EgressRecord] = []

    async def launcher(
        config: SandboxConfig, hooks: LaunchHooks, *, task_status: trio.TaskStatus[Launched]
    ) -> None:
        await warden_launcher(
            config, attrs.evolve(hooks, on_egress=records.append), task_status=task_status
        )

    config = SandboxConfig(network="allow", allow_domains=plan["allow"], stop_grace=5.0)
    outputs = []
    async with open_sandbox(config, launcher=launcher) as sandbox:
        for command in plan["commands"]:
            result = await sandbox.call_tool("run_command", {"command": command})
            outputs.append(result.text_content)
            # Each command's records before the next command's (an allowed connection's
            # comes as it closes, a moment after the client has its answer).
            await trio.sleep(0.3)
        # The window's sums, if there were any, come when it ends.
        await trio.sleep(1.5)
    print(json.dumps({"outputs": outputs, "records": [r.to_json() for r in records]}))


trio.run(main)
