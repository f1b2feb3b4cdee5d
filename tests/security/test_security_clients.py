"""One sandbox per client in the stateless era, attacked: two clients of the proxy with different
client certificates (one CA, two identities) try to see each other's files, and one uses the
other's sandbox handle. Real bubblewrap sandboxes, as root and as an ordinary user; real mutual
TLS on 127.0.0.1; our client and the official MCP SDK (2026-07-28) as the clients."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import httpx2
import mcp
import pytest
import trio
from mcp.client.streamable_http import streamable_http_client

from tests.cli.cli_harness import descendants, wait_all_gone
from tests.security.sessions_harness import sandbox_ports, start_url_child, wait_for_sandboxes
from tests.support.sandbox_users import SandboxUser
from trio_sandbox.mcp import INVALID_PARAMS, McpError, open_mcp_client
from trio_sandbox.sandbox import HANDLE_META_KEY, HANDLE_RESOURCE
from trio_sandbox.tls import load_client_ssl_context

CHILD = Path(__file__).with_name("clients_child.py")
STATELESS = "2026-07-28"


async def _run(
    url: str, context: ssl.SSLContext, command: str, meta: dict[str, Any] | None = None
) -> str:
    """One stateless-era call of run_command on a fresh connection; its text."""
    async with open_mcp_client(url, ssl_context=context, protocol_version=STATELESS) as client:
        result = await client.call_tool("run_command", {"command": command}, meta=meta)
        assert not result.is_error, result.text_content
        return result.text_content


async def _sdk_run(url: str, context: ssl.SSLContext, command: str) -> str:
    """The official MCP SDK, pinned to the stateless era, as the client."""
    http = httpx2.AsyncClient(verify=context, timeout=60)
    async with (
        http,
        mcp.Client(streamable_http_client(url, http_client=http), mode=STATELESS) as client,
    ):
        assert client.protocol_version == STATELESS
        result = await client.call_tool("run_command", {"command": command})
        assert not result.is_error
        return "".join(getattr(item, "text", "") for item in result.content)


async def test_stateless_clients_never_see_each_others_sandbox(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    """A writes a file; B lists and reads: nothing, and B's own file stays B's; each finds its
    own on its next request (one identity keeps its sandbox across connections, the official
    SDK's too); B holding A's sandbox handle is refused with a typed error and no sandbox is
    made for it, while A's handle gives A a fresh sandbox; nothing is left after the end."""
    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            started: tuple[trio.Process, str, int] = await nursery.start(
                start_url_child, sandbox_user, [str(CHILD), str(workspace)], workspace
            )
            process, url, writer = started
            a = load_client_ssl_context(workspace / "a")
            b = load_client_ssl_context(workspace / "b")
            shared = sandbox_ports(process.pid)
            assert len(shared) == 1  # the open_sandbox call's own

            listed = await _run(url, a, "echo a-secret > /tmp/a-file && ls /tmp")
            assert "a-file" in listed
            a_port = sandbox_ports(process.pid) - shared
            assert len(a_port) == 1
            # B: its own sandbox, where A's file does not exist.
            assert "a-file" not in await _run(url, b, "ls -a /tmp")
            assert "a-secret" not in await _run(url, b, "cat /tmp/a-file 2>&1; true")
            assert "b-file" in await _run(url, b, "echo b-secret > /tmp/b-file && ls /tmp")
            b_port = sandbox_ports(process.pid) - shared - a_port
            assert len(b_port) == 1
            # Each finds its own on its next request, and only its own.
            mine = await _run(url, a, "cat /tmp/a-file; ls -a /tmp")
            assert "a-secret" in mine
            assert "b-file" not in mine
            assert "b-secret" in await _run(url, b, "cat /tmp/b-file")
            # The official SDK with A's certificate is A: A's sandbox.
            assert "a-secret" in await _sdk_run(url, a, "cat /tmp/a-file")
            assert "a-secret" not in await _sdk_run(url, b, "cat /tmp/a-file 2>&1; true")
            assert sandbox_ports(process.pid) == shared | a_port | b_port

            # A's handle, stolen by B: refused, typed, and nothing started for it.
            async with open_mcp_client(url, ssl_context=a, protocol_version=STATELESS) as owner:
                (contents,) = await owner.read_resource(HANDLE_RESOURCE)
            handle = contents.text
            assert handle is not None
            assert handle.startswith("sbx1.")
            with pytest.raises(McpError) as refused:
                await _run(url, b, "echo stolen > /tmp/stolen", {HANDLE_META_KEY: handle})
            assert refused.value.code == INVALID_PARAMS
            assert refused.value.data == {"sandboxHandle": "refused"}
            with pytest.raises(McpError) as malformed:
                await _run(url, b, "true", {HANDLE_META_KEY: handle[:-1]})
            assert malformed.value.data == {"sandboxHandle": "malformed"}
            assert sandbox_ports(process.pid) == shared | a_port | b_port
            # A's own handle: a fresh sandbox of A's, apart from A's usual one.
            fresh = await _run(
                url, a, "ls -a /tmp; cat /tmp/stolen 2>&1; true", {HANDLE_META_KEY: handle}
            )
            assert "a-file" not in fresh
            assert "stolen" not in fresh.split("cat:")[0]
            handle_port = sandbox_ports(process.pid) - shared - a_port - b_port
            assert len(handle_port) == 1
            assert "a-secret" in await _run(url, a, "cat /tmp/a-file")

            below = descendants(process.pid)
            os.close(writer)  # the child's stdin ends: it stops
            await wait_for_sandboxes(process.pid, set(), within=30)
    assert process.returncode == 0
    assert await wait_all_gone(below) == []
