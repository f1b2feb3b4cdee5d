"""A stdio MCP server for the proxy tests that also starts a grandchild (``sleep``), and writes
both process ids to the file named by its first argument: stopping it must stop both."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import trio

from trio_sandbox.mcp import Implementation, McpServer, RequestContext, serve_stdio


def main(pid_file: str) -> None:
    grandchild = subprocess.Popen(["sleep", "600"])
    with open(pid_file, "w") as out:
        out.write(f"{os.getpid()} {grandchild.pid}\n")
    server = McpServer(Implementation("stdio-child", "1"))

    @server.tool("whoami")
    async def whoami(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return f"pid {os.getpid()}"

    trio.run(serve_stdio, server)


if __name__ == "__main__":
    main(sys.argv[1])
