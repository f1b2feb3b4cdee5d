"""Spans and audit records, attacked by a client's names: a proxy with the audit log and traces
on (the CLI's exporter child, a real OTLP/HTTP receiver), called with a tool name of 4 MB and one
holding a lone surrogate. Neither may cost another call its span or its record, nor make a
record or a span carry the megabytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from tests.observe.otlp_receiver import open_otlp_receiver
from tests.proxy.proxy_harness import proxy_running
from trio_sandbox.mcp import Implementation, McpError, McpServer, memory_transport, open_mcp_client
from trio_sandbox.observe import ObserveSettings, configure_otel_from_environment, open_observer
from trio_sandbox.observe._audit import MAX_RECORD_BYTES
from trio_sandbox.observe._tracing import MAX_NAME_CHARS, OtelTracing
from trio_sandbox.proxy import InProcessUpstream, OutputGuard


def echo_server() -> McpServer:
    server = McpServer(Implementation("up", "1"))

    @server.tool("echo", input_schema={"type": "object"})
    async def echo(arguments: dict[str, object], ctx: object) -> str:
        return "echoed"

    return server


async def test_a_clients_huge_or_unencodable_names_cost_no_other_call_its_span_or_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge, unencodable = "h" * 4_000_000, "tool-\ud800-name"
    audit = tmp_path / "audit.jsonl"
    async with open_otlp_receiver() as receiver:
        for name, value in receiver.environment.items():
            monkeypatch.setenv(name, value)
        provider = configure_otel_from_environment()
        try:
            async with open_observer(ObserveSettings(audit_log=str(audit))) as observer:
                observer.tracing = OtelTracing(provider)
                guard = OutputGuard(observer=observer)
                upstream = InProcessUpstream("up", echo_server())
                async with (
                    proxy_running([upstream], guard=guard) as proxy,
                    open_mcp_client(memory_transport(proxy.server.mcp)) as client,
                ):
                    for name in (huge, unencodable):
                        with pytest.raises(McpError):
                            await client.call_tool(name, {})
                    result = await client.call_tool("up__echo", {})
                    assert not result.is_error
        finally:
            # Sends what is left and waits for the child: in a thread, as the receiver it
            # sends to is served by this loop.
            await trio.to_thread.run_sync(provider.shutdown)
        spans = list(receiver.spans)
    calls = [span for span in spans if span.name.startswith("tools/call")]
    # The ordinary call's span came, with its children, beside the huge one's (cut).
    [echo] = [span for span in calls if span.name == "tools/call up__echo"]
    assert {span.name for span in spans if span.parent_span_id == echo.span_id} == {
        "upstream",
        "redact",
    }
    assert all(len(span.name) <= MAX_NAME_CHARS + len("tools/call ") for span in spans)
    assert any(span.name.startswith("tools/call hhhh") for span in calls)
    # The audit log has one bounded record per call, the ordinary one whole.
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    calls_recorded = [record for record in records if record["event"] == "tool_call"]
    assert len(calls_recorded) == 3
    assert all(len(json.dumps(record)) < MAX_RECORD_BYTES for record in calls_recorded)
    assert [r["outcome"] for r in calls_recorded if r["tool"] == "up__echo"] == ["ok"]
