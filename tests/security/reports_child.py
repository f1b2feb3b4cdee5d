"""A host that embeds open_sandbox (run as root or as the ordinary user by the reports tests):
it runs the commands in order and prints, as one JSON document, each result, the status before
the first command and after each one, and the WARNING records the host logged.

    python reports_child.py '{"config": {...SandboxConfig fields...}}' COMMAND...
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import trio

from trio_sandbox import SandboxConfig, open_sandbox


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.warnings: list[str] = []
        self.info_lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.warnings.append(record.getMessage())
        else:
            self.info_lines += 1


async def main(options: dict[str, Any], commands: list[str]) -> None:
    records = _Records()
    package_logger = logging.getLogger("trio_sandbox")
    package_logger.addHandler(records)
    package_logger.setLevel(logging.INFO)
    results = []
    statuses = []
    async with open_sandbox(SandboxConfig(**options["config"])) as sandbox:
        await sandbox.call_tool("run_command", {"command": "true"})
        statuses.append(sandbox.status())
        for command in commands:
            result = await sandbox.call_tool("run_command", {"command": command})
            results.append({"text": result.text_content, "is_error": result.is_error})
            statuses.append(sandbox.status())
        generation = sandbox.health.generation
    print(
        json.dumps(
            {
                "results": results,
                "statuses": statuses,
                "generation": generation,
                "warnings": records.warnings,
                "info_lines": records.info_lines,
            }
        )
    )


if __name__ == "__main__":
    trio.run(main, json.loads(sys.argv[1]), sys.argv[2:])
