"""Redaction and large outputs in the proxy, against an upstream that prints what it is told.

The upstream is an in-process server whose tools return whatever text (or structured content)
the test asks for and record the arguments they were called with, so a test sees both faces:
what the client got, and what reached the upstream.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import example, given
from hypothesis import strategies as st

from tests.proxy.proxy_harness import proxy_running
from trio_sandbox.mcp import (
    RESOURCE_NOT_FOUND,
    CallToolResult,
    EmbeddedResource,
    Implementation,
    McpClient,
    McpError,
    McpServer,
    Resource,
    ResourceContents,
    TextContent,
    memory_transport,
    open_mcp_client,
)
from trio_sandbox.proxy import (
    ConfigError,
    InProcessUpstream,
    OutputGuard,
    OutputLimits,
    upstreams_from_mapping,
)
from trio_sandbox.proxy._output_guard import tail_preview
from trio_sandbox.redact import PLACEHOLDER, SecretRedactor
from trio_sandbox.redact import _redactor as redactor_module

GITHUB_TOKEN = "ghp_" + "R8x2Lq9ZkW3vN7pT1mY5cB4dF6hJ0sA2eG8u"
AWS_KEY = "AKIA" + "Z7QW3RTY5UIO2PAS"


def echo_server(seen: list[Mapping[str, Any]]) -> McpServer:
    server = McpServer(Implementation("echo", "1"))

    @server.tool("say", input_schema={"type": "object"})
    async def say(arguments: dict[str, Any], ctx: Any) -> CallToolResult:
        seen.append(arguments)
        structured = arguments.get("structured")
        return CallToolResult(
            content=(TextContent(str(arguments.get("text", ""))),),
            structured_content=structured if isinstance(structured, dict) else None,
        )

    @server.tool("embed", input_schema={"type": "object"})
    async def embed(arguments: dict[str, Any], ctx: Any) -> CallToolResult:
        resource = ResourceContents(uri="file:///x", text=str(arguments["text"]))
        return CallToolResult(content=(EmbeddedResource(resource),))

    @server.tool("generate_password", input_schema={"type": "object"})
    async def generate_password(arguments: dict[str, Any], ctx: Any) -> str:
        return "kT9#vQ2mZ7pL4xW8"

    async def env(uri: str, ctx: Any) -> list[ResourceContents]:
        return [ResourceContents(uri=uri, text=f"TOKEN={GITHUB_TOKEN}\n")]

    server.add_resource(Resource(uri="file:///env", name="env"), env)

    return server


@asynccontextmanager
async def guarded(
    *,
    redact: bool = True,
    limits: OutputLimits | None = None,
    protocol_version: str | None = None,
) -> AsyncIterator[tuple[McpClient, list[Mapping[str, Any]], OutputGuard]]:
    seen: list[Mapping[str, Any]] = []
    guard = OutputGuard(limits or OutputLimits())
    upstream = InProcessUpstream("echo", echo_server(seen), prefix="", redact=redact)
    async with proxy_running([upstream], guard=guard) as proxy:
        transport = memory_transport(proxy.server.mcp)
        async with open_mcp_client(transport, protocol_version=protocol_version) as client:
            yield client, seen, guard


async def test_secrets_become_placeholders_and_come_back_in_arguments() -> None:
    async with guarded() as (client, seen, _):
        first = await client.call_tool("say", {"text": f"token={GITHUB_TOKEN} key={AWS_KEY}"})
        text = first.text_content
        assert GITHUB_TOKEN not in text
        assert AWS_KEY not in text
        placeholders = PLACEHOLDER.findall(text)
        assert len(placeholders) == 2
        github = next(p for p in PLACEHOLDER.finditer(text) if p[1] == "github-pat")[0]
        # One value, one placeholder, for the proxy's life.
        again = await client.call_tool("say", {"text": f"again {GITHUB_TOKEN}"})
        assert again.text_content == f"again {github}"
        # Placeholders in any string of the arguments reach the upstream as the value...
        await client.call_tool("say", {"text": f"use {github}", "nested": {"list": [github]}})
        assert seen[-1] == {"text": f"use {GITHUB_TOKEN}", "nested": {"list": [GITHUB_TOKEN]}}
        # ...and what comes back from it is redacted again.
        # Placeholders the proxy never issued, or split across strings, pass unchanged.
        forged = "[REDACTED_SECRET:github-pat:000000000000]"
        half = len(github) // 2
        await client.call_tool("say", {"text": forged, "parts": [github[:half], github[half:]]})
        assert seen[-1] == {"text": forged, "parts": [github[:half], github[half:]]}


async def test_structured_content_and_embedded_resources_and_reads_are_redacted() -> None:
    async with guarded() as (client, _, _):
        result = await client.call_tool(
            "say", {"text": "see structured", "structured": {"deep": [{"token": GITHUB_TOKEN}]}}
        )
        assert result.structured_content is not None
        assert GITHUB_TOKEN not in repr(result.structured_content)
        assert PLACEHOLDER.fullmatch(result.structured_content["deep"][0]["token"])
        embedded = await client.call_tool("embed", {"text": f"x {GITHUB_TOKEN}"})
        assert GITHUB_TOKEN not in repr(embedded.to_json())
        contents = await client.read_resource("file:///env")
        assert GITHUB_TOKEN not in repr(contents)
        assert "TOKEN=[REDACTED_SECRET:github-pat:" in repr(contents)


async def test_generated_passwords_are_always_redacted() -> None:
    async with guarded() as (client, seen, _):
        result = await client.call_tool("generate_password", {})
        placeholder = result.text_content
        assert PLACEHOLDER.fullmatch(placeholder)
        assert "password" in placeholder
        # Wherever the password shows up later, it is the same placeholder; used, it is real.
        echoed = await client.call_tool("say", {"text": "pw=kT9#vQ2mZ7pL4xW8 done"})
        assert echoed.text_content == f"pw={placeholder} done"
        await client.call_tool("say", {"text": placeholder})
        assert seen[-1]["text"] == "kT9#vQ2mZ7pL4xW8"


async def test_known_secrets_registered_by_the_host() -> None:
    async with guarded() as (client, _, guard):
        guard.add_known_secret("plain-looking-value-42", "env:DEPLOY_KEY")
        result = await client.call_tool("say", {"text": "key is plain-looking-value-42."})
        assert result.text_content.startswith("key is [REDACTED_SECRET:env:DEPLOY_KEY:")


async def test_an_upstream_without_redaction_is_passed_through_both_ways() -> None:
    async with guarded(redact=False) as (client, seen, guard):
        result = await client.call_tool("say", {"text": f"token={GITHUB_TOKEN}"})
        assert result.text_content == f"token={GITHUB_TOKEN}"
        issued = (await guard.redactor()).redact_text(GITHUB_TOKEN)
        await client.call_tool("say", {"text": issued})
        assert seen[-1]["text"] == issued  # no restore towards an upstream that is not redacted


async def test_a_large_output_is_a_tail_and_a_link_to_all_of_it() -> None:
    lines = [f"line {number}" for number in range(1, 20001)]
    async with guarded() as (client, _, _):
        result = await client.call_tool("say", {"text": "\n".join(lines)})
        text_blocks = [block for block in result.content if isinstance(block, TextContent)]
        [preview] = text_blocks
        note, _, tail = preview.text.partition("\n")
        assert note.startswith("[output shortened: 20000 lines, ")
        assert tail.splitlines() == lines[-50:]
        [link] = [
            block for block in result.to_json()["content"] if block["type"] == "resource_link"
        ]
        assert link["uri"] in note
        contents = await client.read_resource(link["uri"])
        assert contents[0].text is not None
        assert contents[0].text.splitlines() == lines


async def test_a_small_output_is_untouched() -> None:
    async with guarded() as (client, _, _):
        result = await client.call_tool("say", {"text": "x\n" * 300})
        assert result.text_content == "x\n" * 300


async def test_old_clients_get_the_uri_in_the_note_but_no_resource_link() -> None:
    async with guarded(protocol_version="2025-03-26") as (client, _, _):
        result = await client.call_tool("say", {"text": "y\n" * 1000})
        kinds = [block["type"] for block in result.to_json()["content"]]
        assert kinds == ["text"]
        assert "resources/read trio-sandbox://output/" in result.text_content


async def test_the_store_drops_the_oldest_and_says_so() -> None:
    limits = OutputLimits(max_lines=2, max_outputs=2)
    async with guarded(limits=limits) as (client, _, _):
        uris = []
        for number in range(3):
            result = await client.call_tool("say", {"text": f"{number}\n" * 5})
            uris.append(
                next(b["uri"] for b in result.to_json()["content"] if b["type"] == "resource_link")
            )
        with pytest.raises(McpError) as caught:
            await client.read_resource(uris[0])
        assert caught.value.code == RESOURCE_NOT_FOUND
        assert "oldest dropped first" in caught.value.message
        assert (await client.read_resource(uris[2]))[0].text == "2\n" * 5


async def test_a_result_that_cannot_be_scanned_in_time_is_withheld() -> None:
    async with guarded() as (client, _, guard):
        (await guard.redactor()).seconds_per_mib = 1e-9
        result = await client.call_tool("say", {"text": f"token={GITHUB_TOKEN} " * 100})
    assert result.is_error
    assert "withheld" in result.text_content
    assert GITHUB_TOKEN not in result.text_content


async def test_other_calls_keep_flowing_while_a_large_output_is_scanned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scan yields to the event loop: a small call starts and finishes while a 1 MiB result
    is being scanned (ordered by events, not by sleeping)."""
    big = ("build step ok " * 8 + "\n") * 9000
    big_scan_started = trio.Event()
    big_scan_finished = trio.Event()
    scan = SecretRedactor.redact_json_async

    async def observed_scan(redactor: SecretRedactor, value: Any, **kwargs: Any) -> Any:
        is_big = "build step ok" in repr(value)
        if is_big:
            big_scan_started.set()
        try:
            return await scan(redactor, value, **kwargs)
        finally:
            if is_big:
                big_scan_finished.set()

    monkeypatch.setattr(SecretRedactor, "redact_json_async", observed_scan)
    # Every scanning step yields: the order then rests on the yields, not on this machine's speed.
    monkeypatch.setattr(redactor_module, "_STEP_BUDGET", 0.0)
    async with guarded() as (client, _, guard):
        await guard.redactor()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.call_tool, "say", {"text": big})
            await big_scan_started.wait()
            small = await client.call_tool("say", {"text": "hello"})
            assert not big_scan_finished.is_set()
    assert small.text_content == "hello"
    assert big_scan_finished.is_set()


@given(
    st.lists(
        st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30)
        | st.text(alphabet="ab\ré\u2028", max_size=30),
        max_size=60,
    ),
    st.integers(1, 20),
    st.integers(1, 200),
)
@example(["abc", "d"], 5, 2)  # a part of a line would fit
@example(["ab\r", "d"], 5, 2)  # the "\n" of a "\r\n" would fit
def test_the_tail_preview_is_whole_last_lines_within_bounds(
    lines: list[str], max_lines: int, max_bytes: int
) -> None:
    text = "\n".join(line.replace("\n", "") for line in lines)
    tail = tail_preview(text, max_lines, max_bytes)
    assert text.endswith(tail)
    assert len(tail.encode()) <= max_bytes
    kept = tail.splitlines(keepends=True)
    assert len(kept) <= max_lines
    whole_lines = text.splitlines(keepends=True)
    if whole_lines and len(whole_lines[-1].encode()) > max_bytes:
        assert whole_lines[-1].endswith(tail)  # even the last line is too long: its end
        assert len(tail.encode()) >= max_bytes - 3  # cut at a character, no shorter
    else:
        assert whole_lines[len(whole_lines) - len(kept) :] == kept
        if len(kept) < min(max_lines, len(whole_lines)):  # as many lines as fit
            before = whole_lines[len(whole_lines) - len(kept) - 1]
            assert len(tail.encode()) + len(before.encode()) > max_bytes


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_lines must be positive"):
        OutputLimits(max_lines=0)


def test_mcp_servers_entries_say_whether_to_redact(tmp_path: Path) -> None:
    raw_entry: dict[str, object] = {"command": "raw-server", "redact": False}
    servers = {"mcpServers": {"docs": {"url": "https://docs.example/mcp"}, "raw": raw_entry}}
    docs, raw = upstreams_from_mapping(servers, tmp_path, "test")
    assert (docs.redact, raw.redact) == (True, False)
    raw_entry["redact"] = "no"
    with pytest.raises(ConfigError, match=r"mcpServers\.raw\.redact: expected true or false"):
        upstreams_from_mapping(servers, tmp_path, "test")


FIRST_USE = """
import threading
import trio
import trio_sandbox.redact as redact

# Which thread loads the rules (before the proxy takes the name).
loaded_in = []
load = redact.default_rules
def spy():
    loaded_in.append(threading.get_ident())
    return load()
redact.default_rules = spy

from trio_sandbox.proxy import OutputGuard

async def main():
    guard = OutputGuard()
    assert not redact.default_rules_loaded()
    redactor = await guard.redactor()
    assert redact.default_rules_loaded()
    assert redactor.redact_text("x ghp_R8x2Lq9ZkW3vN7pT1mY5cB4dF6hJ0sA2eG8u").startswith("x [RED")
    print(loaded_in != [] and threading.get_ident() not in loaded_in)

trio.run(main)
"""


async def test_the_first_use_compiles_the_rules_off_the_event_loop() -> None:
    """In a fresh process: the rules load (about 15 ms) in a worker thread, not the loop's."""
    done = await trio.run_process(
        [sys.executable, "-c", FIRST_USE], capture_stdout=True, capture_stderr=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "True"
