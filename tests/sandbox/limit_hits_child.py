"""A program embedding ``open_sandbox`` with small limits and the host's limit watch
(``serve_limit_watch`` on the current generation's limits report), run as root and as the
ordinary user: runs the commands given, waits for the watch's next reads, and prints one JSON
line: the hits it reported, the cgroups the warden reported, the limits as numbers, and what
each command printed.

    python limit_hits_child.py '{"memory": "256M", "pids": "64", "backend": "bwrap"}' COMMAND...
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

import trio

from trio_sandbox.sandbox import SandboxConfig, limit_numbers, open_sandbox, serve_limit_watch


async def main(limits: dict[str, str], commands: list[str]) -> None:
    hits: list[tuple[str, int]] = []
    config = SandboxConfig(
        memory=limits.get("memory"), pids=limits.get("pids"), backend=limits.get("backend", "auto")
    )
    async with open_sandbox(config) as sandbox:

        def current_limits() -> Mapping[str, Any] | None:
            launched = sandbox._launched()
            return launched.report.limits if launched is not None else None

        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve_limit_watch(
                    current_limits,
                    lambda limit, count: hits.append((limit, count)),
                    interval=0.5,
                    task_status=task_status,
                )
            )
            outputs = []
            for command in commands:
                result = await sandbox.call_tool("run_command", {"command": command})
                outputs.append(result.text_content)
            await trio.sleep(1.5)  # the watch reads again
            report = current_limits() or {}
            nursery.cancel_scope.cancel()
        numbers = limit_numbers(report)
    print(
        json.dumps(
            {
                "hits": hits,
                "cgroups": report.get("cgroups"),
                "numbers": [numbers.memory_bytes, numbers.pids],
                "outputs": outputs,
                "generation": sandbox.health.generation,
            }
        )
    )


if __name__ == "__main__":
    trio.run(main, json.loads(sys.argv[1]), sys.argv[2:])
