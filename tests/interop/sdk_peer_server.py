"""An MCPServer built with the official SDK, the peer our client is tested against."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError


def build_sdk_server() -> MCPServer[Any]:
    sdk = MCPServer("sdk-peer", version="9.9", log_level="WARNING")

    @sdk.tool(description="Echo the text back, reporting progress.")
    async def echo(text: str, ctx: Context) -> str:
        await ctx.report_progress(1, 2, "halfway")
        await ctx.report_progress(2, 2, "done")
        return text

    @sdk.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @sdk.tool(description="Always fails as a tool error.")
    def fail() -> str:
        raise ToolError("deliberate failure")

    return sdk
