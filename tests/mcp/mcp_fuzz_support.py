"""Shared pieces of the bad-input property tests: the server under test, input strategies, and
checks that whatever the server answers is a well-formed JSON-RPC message.

Each hypothesis example runs in its own ``trio.run`` with a ``MockClock`` built for it, so that
slow tools and keep-alive timers cost no real time and a hang shows up as a virtual-time timeout.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio
import trio.testing
from hypothesis import strategies as st

from trio_sandbox.mcp import (
    CallToolResult,
    Implementation,
    McpServer,
    RequestContext,
    TextContent,
    ToolError,
)

ENVELOPE_KEY: Final = "io.modelcontextprotocol/protocolVersion"
VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28")
# Long enough for every slow tool to finish; reaching it means something hung.
VIRTUAL_DEADLINE: Final = 3600.0


def build_fuzz_server() -> McpServer:
    server = McpServer(Implementation("fuzz-target", "1.0"), page_size=2)

    @server.tool(
        "echo",
        input_schema={
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    )
    async def echo(arguments: dict[str, Any], ctx: RequestContext) -> str:
        await ctx.report_progress(1, 2, "halfway")
        await ctx.log("info", {"echo": arguments["text"]})
        return str(arguments["text"])

    @server.tool("noop")
    async def noop(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return ""

    @server.tool(
        "add",
        input_schema={
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    )
    async def add(arguments: dict[str, Any], ctx: RequestContext) -> CallToolResult:
        total = arguments["a"] + arguments["b"]
        return CallToolResult(content=(TextContent(str(total)),), structured_content={"sum": total})

    @server.tool("fail")
    async def fail(arguments: dict[str, Any], ctx: RequestContext) -> str:
        raise ToolError("deliberate failure")

    @server.tool("crash")
    async def crash(arguments: dict[str, Any], ctx: RequestContext) -> str:
        raise RuntimeError("a bug in a tool")

    @server.tool("slow")
    async def slow(arguments: dict[str, Any], ctx: RequestContext) -> str:
        await trio.sleep(5)
        return "slept"

    return server


def run_virtual(fn: Callable[[], Awaitable[None]]) -> None:
    """Run ``fn`` in a fresh Trio run on a virtual clock and check it leaves no task behind."""

    async def main() -> None:
        living_before = trio.lowlevel.current_statistics().tasks_living
        with trio.fail_after(VIRTUAL_DEADLINE):
            await fn()
        assert trio.lowlevel.current_statistics().tasks_living == living_before, "a task leaked"
        assert trio.lowlevel.current_task().child_nurseries == []

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# --- strategies --------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
request_ids = st.integers(min_value=-(2**40), max_value=2**40) | st.text(max_size=8)
tool_names = st.sampled_from(["echo", "noop", "add", "fail", "crash", "slow", "missing"])


def envelope(version: str = "2026-07-28") -> dict[str, Any]:
    return {
        "_meta": {
            ENVELOPE_KEY: version,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "fuzz", "version": "0"},
        }
    }


def mirrored_headers(message: Any) -> list[tuple[str, str]]:
    """The headers a stateless-era client derives from its request body (what it can of them)."""
    if not isinstance(message, dict):
        return []
    headers: list[tuple[str, str]] = []
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    version = meta.get(ENVELOPE_KEY) if isinstance(meta, dict) else None
    if isinstance(version, str):
        headers.append(("mcp-protocol-version", version))
    method = message.get("method")
    if isinstance(method, str):
        headers.append(("mcp-method", method))
    name = params.get("name") if isinstance(params, dict) else None
    if isinstance(name, str):
        headers.append(("mcp-name", name))
    return headers


@st.composite
def valid_messages(draw: st.DrawFn, *, stateless: bool | None = None) -> dict[str, Any]:
    """A well-formed JSON-RPC message an MCP client could send."""
    with_envelope = draw(st.booleans()) if stateless is None else stateless
    version = draw(st.sampled_from(["2026-07-28"] * 3) | st.sampled_from(VERSIONS))
    params: dict[str, Any] = envelope(version) if with_envelope else {}
    kind = draw(
        st.sampled_from(
            [
                "initialize",
                "initialized",
                "tools/list",
                "tools/call",
                "tools/call",
                "tools/call",
                "tools/call",
                "server/discover",
                "ping",
                "cancelled",
                "response",
                "error",
                "unknown",
            ]
        )
    )
    request_id = draw(request_ids)
    if kind == "initialize":
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "initialize",
            "params": {
                "protocolVersion": draw(st.sampled_from(VERSIONS)),
                "capabilities": {},
                "clientInfo": {"name": "fuzz", "version": "0"},
            },
        }
    if kind == "initialized":
        return {"jsonrpc": "2.0", "method": "notifications/initialized"}
    if kind == "cancelled":
        return {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request_id},
        }
    if kind == "response":
        return {"jsonrpc": "2.0", "id": request_id, "result": draw(st.just({}) | json_values)}
    if kind == "error":
        return {"jsonrpc": "2.0", "id": request_id, "error": {"code": -1, "message": "x"}}
    if kind == "tools/call":
        name = draw(tool_names)
        params["name"] = name
        fitting: st.SearchStrategy[Any] = {
            "echo": st.fixed_dictionaries({"text": st.text(max_size=8)}),
            "add": st.fixed_dictionaries({"a": st.integers(), "b": st.integers()}),
        }.get(name, st.just({}))
        params["arguments"] = draw(fitting | fitting | json_values)
        if draw(st.booleans()):
            params.setdefault("_meta", {})["progressToken"] = draw(request_ids)
    method = {"unknown": draw(st.text(min_size=1, max_size=12))}.get(kind, kind)
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    empty_params_too: bool = draw(st.booleans())
    if params or empty_params_too:
        message["params"] = params
    return message


@st.composite
def mutated_messages(draw: st.DrawFn, *, stateless: bool | None = None) -> Any:
    """A valid message with a few random edits: keys dropped, values replaced, types changed."""
    message: Any = draw(valid_messages(stateless=stateless))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        target = message
        params = message.get("params") if isinstance(message, dict) else None
        if isinstance(params, dict) and draw(st.booleans()):
            target = params
        if not isinstance(target, dict):
            break
        edit = draw(st.sampled_from(["drop", "replace", "add", "wrap"]))
        keys = sorted(target)
        if edit == "drop" and keys:
            del target[draw(st.sampled_from(keys))]
        elif edit == "replace" and keys:
            target[draw(st.sampled_from(keys))] = draw(json_values)
        elif edit == "add":
            target[draw(st.sampled_from(["id", "method", "result", "error", "params", "x"]))] = (
                draw(json_values)
            )
        elif edit == "wrap" and target is message:
            message = [message] * draw(st.integers(min_value=0, max_value=2))
            break
    return message


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


payloads = st.one_of(
    st.binary(max_size=64),
    json_values.map(dumps),
    mutated_messages().map(dumps),
    valid_messages().map(dumps),
)


# --- checks -------------------------------------------------------------------------------------


def readable_id(raw: Any) -> int | str | None:
    value = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return None


def ids_in(raw: Any) -> list[int | str | None]:
    items = raw if isinstance(raw, list) else [raw]
    return [readable_id(item) for item in items]


def check_outgoing_message(data: bytes | str) -> dict[str, Any]:
    """Something the server sent must be one well-formed JSON-RPC 2.0 message."""
    message = json.loads(data)
    assert isinstance(message, dict), message
    assert message.get("jsonrpc") == "2.0", message
    if "method" in message:
        assert isinstance(message["method"], str)
        assert message["method"]
        assert "result" not in message
        assert "error" not in message
        return message
    assert "id" in message, message
    request_id = message["id"]
    assert request_id is None or isinstance(request_id, (int, str)), message
    assert ("result" in message) != ("error" in message), message
    if "result" in message:
        assert isinstance(message["result"], dict), message
        assert request_id is not None
    else:
        check_error_object(message["error"])
    return message


def check_error_object(error: Any) -> None:
    assert isinstance(error, dict), error
    assert isinstance(error.get("code"), int), error
    assert not isinstance(error["code"], bool), error
    assert isinstance(error.get("message"), str), error
    assert error["message"], error
    assert set(error) <= {"code", "message", "data"}, error


def check_error_body(body: bytes, allowed_ids: list[int | str | None]) -> dict[str, Any]:
    """A refusal's body: a JSON-RPC error response naming the request's id or null."""
    message = check_outgoing_message(body)
    assert "error" in message, message
    assert message["id"] is None or message["id"] in allowed_ids, (message, allowed_ids)
    return message


def parse_sse(body: bytes) -> list[bytes]:
    """The data of each event of an SSE body (comments and empty priming events dropped)."""
    payloads: list[bytes] = []
    for block in body.split(b"\n\n"):
        data = [line[5:].lstrip(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
        joined = b"\n".join(data)
        if joined:
            payloads.append(joined)
    return payloads
