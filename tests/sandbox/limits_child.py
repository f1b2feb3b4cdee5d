"""A program that embeds open_sandbox with the limits given as JSON and runs commands in order,
printing each result and the sandbox's status as one JSON document (so that the limits tests can
run it as root and as an ordinary user).

    python limits_child.py '{"memory": "256M", ...}' COMMAND...
"""

from __future__ import annotations

import json
import logging
import sys

import trio

from trio_sandbox import SandboxConfig, open_sandbox


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def main(limits: dict[str, str], commands: list[str]) -> None:
    warnings = _Warnings()
    logging.getLogger("trio_sandbox").addHandler(warnings)
    results = []
    config = SandboxConfig(
        memory=limits.get("memory"),
        pids=limits.get("pids"),
        cpus=limits.get("cpus"),
        tmp_size=limits.get("tmp_size"),
    )
    async with open_sandbox(config) as sandbox:
        for command in commands:
            result = await sandbox.call_tool("run_command", {"command": command})
            results.append({"text": result.text_content, "is_error": result.is_error})
        status = sandbox.status()
        generation = sandbox.health.generation
    print(
        json.dumps(
            {
                "results": results,
                "status": status,
                "generation": generation,
                "warnings": warnings.lines,
            }
        )
    )


if __name__ == "__main__":
    trio.run(main, json.loads(sys.argv[1]), sys.argv[2:])
