"""Shared pieces of the proxy tests: small upstream servers, and the proxy and servers running.

The helpers of tests/mcp (ASGI driver, fuzz strategies and checks) and tests/conformance (the
conformance runner's result parsing) are reused from their directories (see conftest.py).
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from trio_sandbox.mcp import (
    BoundServer,
    CallToolResult,
    GetPromptResult,
    HttpSettings,
    Implementation,
    McpHttpApp,
    McpServer,
    Prompt,
    PromptMessage,
    RequestContext,
    Resource,
    ResourceContents,
    ResourceTemplate,
    TextContent,
    serve_http,
)
from trio_sandbox.proxy import HttpFace, ProxyFace, ProxyHandle, UpstreamSpec, serve_proxy

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent

NODE_BIN = REPO / ".tools" / "npm" / "node_modules" / ".bin"
EVERYTHING_SERVER = TESTS / "conformance" / "everything_server.py"
TEXT_ARGUMENT = {"type": "object", "properties": {"text": {"type": "string"}}}


@attrs.define(eq=False)
class Recorder:
    """What an upstream test server saw: calls started, cancelled, and finished."""

    started: list[str] = attrs.field(factory=list)
    cancelled: list[str] = attrs.field(factory=list)
    finished: list[str] = attrs.field(factory=list)
    release: trio.Event = attrs.field(factory=trio.Event)
    was_cancelled: trio.Event = attrs.field(factory=trio.Event)


def build_upstream(
    name: str, *, tools: Sequence[str] = ("echo",), page_size: int = 100
) -> tuple[McpServer, Recorder]:
    """An upstream whose tools answer ``NAME:TOOL:text``, plus ``wait`` (until released or
    cancelled), ``progress`` (reports 3 steps tagged with its text) and ``sample`` (asks the
    client's model), a prompt ``greet``, a resource ``NAME://doc`` and a template ``NAME://t/{x}``."""
    server = McpServer(Implementation(name, "1.0"), page_size=page_size)
    seen = Recorder()

    def answer_as(tool: str) -> Any:
        async def answer(arguments: dict[str, Any], ctx: RequestContext) -> str:
            seen.started.append(tool)
            seen.finished.append(tool)
            return f"{name}:{tool}:{arguments.get('text', '')}"

        return answer

    for tool in tools:
        server.tool(tool, description=f"{tool} of {name}", input_schema=TEXT_ARGUMENT)(
            answer_as(tool)
        )

    @server.tool("wait", input_schema=TEXT_ARGUMENT)
    async def wait(arguments: dict[str, Any], ctx: RequestContext) -> str:
        seen.started.append("wait")
        try:
            await seen.release.wait()
        except trio.Cancelled:
            seen.cancelled.append("wait")
            seen.was_cancelled.set()
            raise
        seen.finished.append("wait")
        return "released"

    @server.tool("progress", input_schema=TEXT_ARGUMENT)
    async def progress(arguments: dict[str, Any], ctx: RequestContext) -> str:
        for step in range(1, 4):
            await ctx.report_progress(step, 3, f"{arguments.get('text')}-{step}")
            await trio.sleep(0.01)
        await ctx.log("info", f"{name} logged {arguments.get('text')}")
        return "done"

    @server.tool("sample", input_schema=TEXT_ARGUMENT)
    async def sample(arguments: dict[str, Any], ctx: RequestContext) -> CallToolResult:
        answer = await ctx.sample(str(arguments.get("text")))
        content = answer.get("content") or {}
        return CallToolResult.text(f"{name} heard {content.get('text')}")

    async def greet(arguments: dict[str, str], ctx: RequestContext) -> GetPromptResult:
        return GetPromptResult([PromptMessage("user", TextContent(f"hello from {name}"))])

    server.add_prompt(Prompt("greet", description=f"greeting of {name}"), greet)

    async def read_doc(uri: str, ctx: RequestContext) -> list[ResourceContents]:
        return [ResourceContents(uri, text=f"doc of {name}", mime_type="text/plain")]

    server.add_resource(Resource(f"{name}://doc", "doc"), read_doc)

    async def read_template(
        uri: str, variables: dict[str, str], ctx: RequestContext
    ) -> list[ResourceContents]:
        return [ResourceContents(uri, text=f"{name} template {variables['x']}")]

    server.add_resource_template(ResourceTemplate(f"{name}://t/{{x}}", "t"), read_template)
    return server, seen


@asynccontextmanager
async def http_served(
    server: McpServer, *, settings: HttpSettings | None = None
) -> AsyncIterator[tuple[BoundServer, McpHttpApp]]:
    app = McpHttpApp(server, settings or HttpSettings())
    async with trio.open_nursery() as nursery:
        bound: BoundServer = await nursery.start(functools.partial(serve_http, app))
        yield bound, app
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def proxy_running(
    upstreams: Sequence[UpstreamSpec],
    face: ProxyFace | None = None,
    **options: Any,
) -> AsyncIterator[ProxyHandle]:
    async with trio.open_nursery() as nursery:
        handle: ProxyHandle = await nursery.start(
            functools.partial(serve_proxy, upstreams, face or HttpFace(plain=True), **options)
        )
        yield handle
        nursery.cancel_scope.cancel()


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
