"""Every call through the proxy makes exactly one record, with its outcome; no record holds a
secret. Driven through the real proxy (serve_proxy, its output guard, an in-process upstream)
with hypothesis choosing the mix of calls."""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import hypothesis.strategies as st
import pytest
import trio
from hypothesis import HealthCheck, example, given, settings

from tests.proxy.proxy_harness import proxy_running
from trio_sandbox.concurrency import AsyncValue
from trio_sandbox.mcp import (
    INVALID_PARAMS,
    CallToolResult,
    GetPromptResult,
    Implementation,
    McpError,
    McpServer,
    Prompt,
    PromptMessage,
    RequestContext,
    Resource,
    ResourceContents,
    TextContent,
    memory_transport,
    open_mcp_client,
)
from trio_sandbox.observe import (
    AUDIT_SCHEMA_VERSION,
    CallKind,
    CallRecord,
    Observer,
    Outcome,
    Record,
    open_audit_log,
)
from trio_sandbox.proxy import InProcessUpstream, OutputGuard

# A token of a shape gitleaks' rules know (a GitHub personal access token), made up.
TOKEN = "ghp_" + "Zq3k9TxW2mN8vB4cR7yL1pD6sH0jF5gA2eU8"
TEXT = {"type": "object", "properties": {"text": {"type": "string"}}}


@attrs.define
class ListSink:
    records: list[Record] = attrs.field(factory=list)
    placeholders: list[str] = attrs.field(factory=list)
    shortened: list[str | None] = attrs.field(factory=list)
    count: AsyncValue[int] = attrs.field(factory=lambda: AsyncValue(0))

    def record(self, record: Record) -> None:
        self.records.append(record)
        self.count.value = len(self.records)

    def placeholder_made(self, rule: str) -> None:
        self.placeholders.append(rule)

    def output_shortened(self, upstream: str | None) -> None:
        self.shortened.append(upstream)


def build_server() -> McpServer:
    server = McpServer(Implementation("up", "1"))

    @server.tool("ok", input_schema=TEXT)
    async def ok(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return f"ok {arguments.get('text', '')}"

    @server.tool("oops", input_schema=TEXT)
    async def oops(arguments: dict[str, Any], ctx: RequestContext) -> CallToolResult:
        return CallToolResult.error(f"it failed: {arguments.get('text', '')}")

    @server.tool("refuse", input_schema=TEXT)
    async def refuse(arguments: dict[str, Any], ctx: RequestContext) -> str:
        raise McpError(INVALID_PARAMS, f"refused {arguments.get('text', '')}")

    @server.tool("leak", input_schema=TEXT)
    async def leak(arguments: dict[str, Any], ctx: RequestContext) -> str:
        return f"here: {TOKEN}"

    @server.tool("wait", input_schema=TEXT)
    async def wait(arguments: dict[str, Any], ctx: RequestContext) -> str:
        await trio.sleep_forever()
        raise AssertionError

    async def read_doc(uri: str, ctx: RequestContext) -> list[ResourceContents]:
        return [ResourceContents(uri, text="doc")]

    server.add_resource(Resource("up://doc", "doc"), read_doc)

    async def greet(arguments: dict[str, str], ctx: RequestContext) -> GetPromptResult:
        return GetPromptResult([PromptMessage("user", TextContent("hello"))])

    server.add_prompt(Prompt("greet", description="a greeting"), greet)
    return server


ACTIONS = (
    "ok",
    "oops",
    "refuse",
    "leak",
    "unknown",
    "cancel",
    "read",
    "read_missing",
    "prompt",
    "prompt_missing",
)
# What each action's record says: (kind, name, outcome, failure type).
EXPECTED: dict[str, tuple[CallKind, str, Outcome, str | None]] = {
    "ok": (CallKind.TOOL_CALL, "up__ok", Outcome.OK, None),
    "oops": (CallKind.TOOL_CALL, "up__oops", Outcome.TOOL_ERROR, None),
    "refuse": (CallKind.TOOL_CALL, "up__refuse", Outcome.FAILED, "McpError"),
    "leak": (CallKind.TOOL_CALL, "up__leak", Outcome.OK, None),
    "unknown": (CallKind.TOOL_CALL, "up__nothing", Outcome.FAILED, "McpError"),
    "cancel": (CallKind.TOOL_CALL, "up__wait", Outcome.FAILED, "Cancelled"),
    "read": (CallKind.RESOURCE_READ, "up://doc", Outcome.OK, None),
    "read_missing": (CallKind.RESOURCE_READ, "up://missing", Outcome.FAILED, "McpError"),
    "prompt": (CallKind.PROMPT_GET, "up__greet", Outcome.OK, None),
    "prompt_missing": (CallKind.PROMPT_GET, "up__nothing", Outcome.FAILED, "McpError"),
}


async def run_actions(actions: Sequence[tuple[str, str]], audit_path: Path) -> ListSink:
    """Each action in turn through a real proxy; returns what its observer's sink got."""
    sink = ListSink()
    with open_audit_log(str(audit_path)) as audit:
        guard = OutputGuard(observer=Observer(sinks=[sink, audit]))
        upstreams = [InProcessUpstream("up", build_server())]
        async with (
            proxy_running(upstreams, guard=guard) as proxy,
            open_mcp_client(memory_transport(proxy.server.mcp)) as client,
        ):
            for done, (action, text) in enumerate(actions, 1):
                arguments = {"text": text}
                kind, name, _, _ = EXPECTED[action]
                if action == "cancel":
                    with trio.move_on_after(0.05):
                        await client.call_tool(name, arguments)
                elif kind is CallKind.PROMPT_GET:
                    with pytest.raises(McpError) if action == "prompt_missing" else _nothing():
                        await client.get_prompt(name, arguments)
                elif kind is CallKind.RESOURCE_READ:
                    with pytest.raises(McpError) if action == "read_missing" else _nothing():
                        await client.read_resource(name)
                elif action in ("refuse", "unknown"):
                    with pytest.raises(McpError):
                        await client.call_tool(name, arguments)
                else:
                    await client.call_tool(name, arguments)
                # A cancelled call's record is written as its handler unwinds.
                with trio.fail_after(5):
                    await sink.count.wait_value(functools.partial(operator.le, done))
    return sink


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# A text past the proxy's small-arguments bound takes the record's other path (redacted in
# steps, after the call has ended).
LARGE = "x" * 20_000 + f" token {TOKEN} at the end"
texts = st.one_of(st.text(max_size=40), st.just(f"token {TOKEN} inside"), st.just(LARGE))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=st.lists(st.tuples(st.sampled_from(ACTIONS), texts), min_size=1, max_size=8))
@example(actions=[("ok", LARGE), ("cancel", LARGE), ("refuse", LARGE), ("ok", "small")])
def test_every_call_has_exactly_one_record_with_its_outcome(
    actions: list[tuple[str, str]], tmp_path: Path
) -> None:
    audit_path = tmp_path / "audit.jsonl"
    audit_path.unlink(missing_ok=True)
    sink = trio.run(run_actions, actions, audit_path)
    calls = [record for record in sink.records if isinstance(record, CallRecord)]
    assert len(calls) == len(actions) == len(sink.records)
    for (action, text), record in zip(actions, calls, strict=True):
        kind, name, outcome, failure = EXPECTED[action]
        assert (record.kind, record.name, record.outcome) == (kind, name, outcome), action
        assert (record.failure.type if record.failure else None) == failure
        unrouted = ("unknown", "read_missing", "prompt_missing")
        assert record.upstream == ("up" if action not in unrouted else None)
        assert record.duration >= 0
        if kind is not CallKind.RESOURCE_READ:
            assert record.arguments is not None
            if TOKEN not in text:
                assert record.arguments == {"text": text}
    lines = audit_path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [record.to_json() for record in calls]
    assert all(json.loads(line)["v"] == AUDIT_SCHEMA_VERSION for line in lines)
    # The token, in arguments, in an error message or in a result, is in no record.
    assert TOKEN not in audit_path.read_text()
    tool_calls = [(a, t) for a, t in actions if EXPECTED[a][0] is CallKind.TOOL_CALL]
    if any(action == "leak" or TOKEN in text for action, text in tool_calls):
        assert sink.placeholders, "a placeholder was made and counted"


async def test_records_are_redacted_even_where_the_client_wrote_the_secret(
    tmp_path: Path,
) -> None:
    # A tool name, an unknown tool's error, arguments: every string a record holds.
    audit_path = tmp_path / "audit.jsonl"
    sink = ListSink()
    with open_audit_log(str(audit_path)) as audit:
        guard = OutputGuard(observer=Observer(sinks=[sink, audit]))
        async with (
            proxy_running([InProcessUpstream("up", build_server())], guard=guard) as proxy,
            open_mcp_client(memory_transport(proxy.server.mcp)) as client,
        ):
            with pytest.raises(McpError):
                await client.call_tool(f"up__{TOKEN}", {"nested": [{"key": TOKEN}]})
            with pytest.raises(McpError):
                await client.read_resource(f"up://{TOKEN}")
    text = audit_path.read_text()
    assert TOKEN not in text
    assert text.count("[REDACTED_SECRET:github-pat:") >= 3, text
