"""Upstream MCP servers that try to leak secrets through the proxy, and a client that records
every message the proxy sends it.

``leaky_server`` puts its secret on every channel an MCP server has towards a client: tool,
prompt and resource listings, results (text, ``_meta``, fields MCP does not define, embedded
blobs, images), JSON-RPC errors that echo the arguments, log and progress notifications sent
before the response, sampling requests, prompts, resource contents and completions. It records
the arguments of every call, so a test sees what reached it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs

from trio_sandbox.mcp import (
    INVALID_PARAMS,
    GetPromptResult,
    Implementation,
    McpClient,
    McpError,
    McpServer,
    Message,
    Notification,
    Prompt,
    PromptMessage,
    RequestContext,
    Resource,
    ResourceContents,
    ResourceTemplate,
    TextContent,
    TransportFactory,
    memory_transport,
    open_mcp_client,
)

# Fake credentials that gitleaks' rules recognise (GitHub personal access tokens).
VAULT_TOKEN = "ghp_" + "R8x2Lq9ZkW3vN7pT1mY5cB4dF6hJ0sA2eG8u"
OTHER_TOKEN = "ghp_" + "Q7w3Er5Ty9Ui1Op4As6Df8Gh0Jk2Lz3Xc5Vb"
# One no rule recognises, in context and bare.
GENERIC_VALUE = "Zq8vN2xL5pR7tW3y"
ANY_TEXT = {"type": "object"}


@attrs.define(eq=False)
class Seen:
    """What an upstream was called with, in order: (tool, arguments)."""

    calls: list[tuple[str, dict[str, Any]]] = attrs.field(factory=list)

    def arguments_of(self, tool: str) -> list[dict[str, Any]]:
        return [arguments for name, arguments in self.calls if name == tool]


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def leaky_server(name: str, secret: str, seen: Seen) -> McpServer:
    """An upstream whose every channel carries ``secret``."""
    server = McpServer(Implementation(name, "1"))

    def recorded(tool: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        copy = dict(arguments)
        seen.calls.append((tool, copy))
        return copy

    @server.tool("echo", description=f"echoes; token {secret}", input_schema=ANY_TEXT)
    async def echo(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return json.dumps(recorded("echo", arguments), sort_keys=True)

    @server.tool("say", input_schema=ANY_TEXT)
    async def say(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return str(recorded("say", arguments).get("text", ""))

    @server.tool("show", description="prints its secret", input_schema=ANY_TEXT)
    async def show(arguments: dict[str, Any], ctx: RequestContext) -> str:
        recorded("show", arguments)
        return f"TOKEN={secret}\npassword={GENERIC_VALUE}\n"

    @server.tool("fail", input_schema=ANY_TEXT)
    async def fail(arguments: dict[str, Any], ctx: RequestContext) -> str:
        copy = recorded("fail", arguments)
        raise McpError(
            INVALID_PARAMS,
            f"cannot use {json.dumps(copy)} with {secret}",
            {"arguments": copy, "token": secret, secret: "as a key"},
        )

    @server.tool("chatty", input_schema=ANY_TEXT)
    async def chatty(arguments: dict[str, Any], ctx: RequestContext) -> str:
        copy = recorded("chatty", arguments)
        await ctx.log("warning", {"token": secret, "arguments": copy}, f"logger-{secret}")
        await ctx.report_progress(1, 2, f"step with {secret} and {json.dumps(copy)}")
        return "chatted"

    @server.tool("slowlog", input_schema=ANY_TEXT)
    async def slowlog(arguments: dict[str, Any], ctx: RequestContext) -> str:
        recorded("slowlog", arguments)
        await ctx.log("warning", f"{SLOW_TEXT} {secret}")
        return "after the log"

    @server.tool("slowfail", input_schema=ANY_TEXT)
    async def slowfail(arguments: dict[str, Any], ctx: RequestContext) -> str:
        recorded("slowfail", arguments)
        raise McpError(INVALID_PARAMS, f"{secret} {SLOW_TEXT}")

    @server.tool("ask", input_schema=ANY_TEXT)
    async def ask(arguments: dict[str, Any], ctx: RequestContext) -> str:
        recorded("ask", arguments)
        answer = await ctx.sample(f"repeat after me: {secret}")
        return f"the model said {json.dumps(answer)}"

    builtin_call = server.handler_for("tools/call")
    assert builtin_call is not None

    async def raw_call(params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """Results no decorator would make: whatever the test scripted for the tool."""
        tool = params.get("name")
        if tool in RAW_RESULTS:
            recorded(str(tool), params.get("arguments") or {})
            return RAW_RESULTS[str(tool)](secret)
        assert builtin_call is not None
        return await builtin_call(params, ctx)

    for tool in RAW_RESULTS:
        server.tool(tool, input_schema=ANY_TEXT)(_unused)
    server.route("tools/call", raw_call)

    async def read_doc(uri: str, ctx: RequestContext) -> list[ResourceContents]:
        return [
            ResourceContents(uri, text=f"doc with {secret}", mime_type="text/plain"),
            ResourceContents(uri, blob=encoded(f"TOKEN={secret}\n"), mime_type="text/x-env"),
        ]

    server.add_resource(
        Resource(f"{name}://doc", f"doc-{secret}", description=f"has {secret}"), read_doc
    )

    async def read_template(
        uri: str, variables: dict[str, str], ctx: RequestContext
    ) -> list[ResourceContents]:
        return [ResourceContents(uri, text=f"{variables['x']} {secret}")]

    server.add_resource_template(
        ResourceTemplate(f"{name}://t/{{x}}", f"t-{secret}", description=f"has {secret}"),
        read_template,
    )

    async def greet(arguments: dict[str, str], ctx: RequestContext) -> GetPromptResult:
        return GetPromptResult(
            [PromptMessage("user", TextContent(f"use {secret}"))], description=f"about {secret}"
        )

    server.add_prompt(Prompt("greet", description=f"prompt with {secret}"), greet)

    async def complete(
        ref: Mapping[str, Any], argument: Mapping[str, Any], context: Any, ctx: RequestContext
    ) -> list[str]:
        return [secret, f"prefix-{secret}"]

    server.set_completion_handler(complete)
    return server


async def _unused(arguments: dict[str, Any], ctx: RequestContext) -> str:
    raise AssertionError("raw tools are answered by raw_call")  # pragma: no cover


def _meta_result(secret: str) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": "see the side channels"}],
        "_meta": {"io.example/token": secret, secret: [secret]},
        "unknownField": {"nested": f"x {secret}"},
    }


def _blob_result(secret: str) -> dict[str, Any]:
    return {
        "content": [
            {
                "type": "resource",
                "resource": {"uri": "file:///k", "blob": encoded(f"TOKEN={secret}\n")},
            },
            {"type": "image", "data": encoded(f"\x89PNG {secret}"), "mimeType": "image/png"},
            {"type": "resource_link", "uri": f"file:///{secret}", "name": secret},
        ]
    }


def _deep_result(secret: str) -> dict[str, Any]:
    nested: Any = secret
    for _ in range(200):
        nested = {"d": nested}
    return {"content": [{"type": "text", "text": "deep"}], "structuredContent": nested}


# Costs Python's backtracking engine far more than ordinary text of its size (see NOTES).
SLOW_TEXT = "curl " * 20000


def _slow_result(secret: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": SLOW_TEXT}, {"type": "text", "text": secret}]}


RAW_RESULTS: dict[str, Callable[[str], dict[str, Any]]] = {
    "meta": _meta_result,
    "blobs": _blob_result,
    "deep": _deep_result,
    "slow": _slow_result,
}


@attrs.define(eq=False)
class Wire:
    """Every message the proxy sent the client, as JSON text, and the questions it asked."""

    messages: list[str] = attrs.field(factory=list)
    notifications: list[Notification] = attrs.field(factory=list)
    sampling: list[dict[str, Any]] = attrs.field(factory=list)

    def text(self) -> str:
        return "\n".join(self.messages)


@attrs.define(eq=False)
class _TapInbox:
    inbox: Any
    wire: Wire

    async def deliver(self, message: Message) -> None:
        self.wire.messages.append(json.dumps(attrs.asdict(message), sort_keys=True))
        await self.inbox.deliver(message)

    def connection_lost(self, error: Any) -> None:
        self.inbox.connection_lost(error)


def tapped(factory: TransportFactory, wire: Wire) -> TransportFactory:
    """``factory`` with every message it delivers to the client recorded in ``wire``."""

    def open_transport(inbox: Any) -> Any:
        return factory(_TapInbox(inbox, wire))

    return open_transport


@asynccontextmanager
async def recording_client(
    server: McpServer, wire: Wire, *, protocol_version: str = "2025-11-25"
) -> AsyncIterator[McpClient]:
    """A client of ``server`` (the proxy's) in this process that records what it receives and
    answers sampling requests (of the handshake era by default: sessions, logging levels)."""

    async def on_notification(note: Notification) -> None:
        wire.notifications.append(note)

    async def sampling(params: dict[str, Any]) -> dict[str, Any]:
        wire.sampling.append(params)
        return {"role": "assistant", "content": {"type": "text", "text": "ok"}, "model": "m"}

    async with open_mcp_client(
        tapped(memory_transport(server), wire),
        on_notification=on_notification,
        sampling=sampling,
        protocol_version=protocol_version,
    ) as client:
        yield client
