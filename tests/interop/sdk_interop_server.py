"""The server the SDK interop tests talk to: built on trio_sandbox.mcp, shared by the in-process
HTTP tests and the stdio child process (``python sdk_interop_server.py`` serves it on stdio)."""

from __future__ import annotations

from typing import Any

from trio_sandbox.mcp import (
    CallToolResult,
    Implementation,
    McpServer,
    RequestContext,
    TextContent,
    ToolError,
)

ECHO_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
}
ADD_SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
SUM_SCHEMA = {
    "type": "object",
    "properties": {"sum": {"type": "integer"}},
    "required": ["sum"],
}


def build_server() -> McpServer:
    # A page size of 2 makes every tools/list of 4 tools paginate.
    server = McpServer(Implementation("trio-sandbox-interop", "1.0"), page_size=2)

    @server.tool(
        "echo", description="Echo the text back, reporting progress.", input_schema=ECHO_SCHEMA
    )
    async def echo(arguments: dict[str, Any], ctx: RequestContext) -> str:
        await ctx.report_progress(1, 2, "halfway")
        await ctx.report_progress(2, 2, "done")
        return str(arguments["text"])

    @server.tool(
        "add",
        description="Add two integers.",
        input_schema=ADD_SCHEMA,
        output_schema=SUM_SCHEMA,
        annotations={"readOnlyHint": True},
    )
    async def add(arguments: dict[str, Any], ctx: RequestContext) -> CallToolResult:
        total = arguments["a"] + arguments["b"]
        return CallToolResult(content=(TextContent(str(total)),), structured_content={"sum": total})

    @server.tool("fail", description="Always fails as a tool error.")
    async def fail(arguments: dict[str, Any], ctx: RequestContext) -> str:
        raise ToolError("deliberate failure")

    @server.tool("noop", description="Does nothing.")
    async def noop(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return ""

    return server


if __name__ == "__main__":
    import trio

    from trio_sandbox.mcp import serve_stdio

    trio.run(serve_stdio, build_server())
