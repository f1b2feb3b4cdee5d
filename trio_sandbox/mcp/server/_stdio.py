"""Serving MCP over stdio: one session on stdin/stdout, newline-delimited JSON.

The server reads its stdin and writes nothing but messages to its stdout.
"""

from __future__ import annotations

import os

import trio

from ..protocol._lines import read_lines
from ._duplex import serve_duplex
from ._server import McpServer


async def serve_stdio(
    server: McpServer,
    *,
    stdin: trio.abc.ReceiveStream | None = None,
    stdout: trio.abc.SendStream | None = None,
) -> None:
    """Serve one MCP session on stdin/stdout until stdin ends."""
    owned: list[trio.lowlevel.FdStream] = []
    if stdin is None:
        stdin = trio.lowlevel.FdStream(os.dup(0))
        owned.append(stdin)
    if stdout is None:
        stdout = trio.lowlevel.FdStream(os.dup(1))
        owned.append(stdout)
    output = stdout

    async def send_line(data: bytes) -> None:
        await output.send_all(data + b"\n")

    try:
        await serve_duplex(server, read_lines(stdin), send_line)
    finally:
        for stream in owned:
            with trio.CancelScope(shield=True):
                await stream.aclose()
