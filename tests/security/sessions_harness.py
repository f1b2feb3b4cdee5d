"""The proxy's face as an authenticated flooder meets it: real mutual TLS on 127.0.0.1, raw
requests through httpx (so that the flood does exactly what the test says), and the proxy in
front of one in-process upstream ``one`` with two tools: ``echo`` and ``hold`` (until released)."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from tests.cli.cli_harness import descendants, kill_group
from tests.support.sandbox_users import SandboxUser
from trio_sandbox.mcp import HttpSettings, Implementation, McpServer, RequestContext
from trio_sandbox.proxy import HttpFace, InProcessUpstream, ProxyHandle, serve_proxy
from trio_sandbox.tls import CertificateChain

ACCEPT_BOTH = "application/json, text/event-stream"
VERSION = "2025-11-25"


@attrs.define(eq=False)
class Holds:
    """The ``hold`` calls of the upstream: how many run, and when ``target`` of them do."""

    target: int = 0
    running: int = 0
    started: int = 0
    reached: trio.Event = attrs.field(factory=trio.Event)
    release: trio.Event = attrs.field(factory=trio.Event)


def build_upstream() -> tuple[McpServer, Holds]:
    server = McpServer(Implementation("one", "1.0"))
    holds = Holds()
    schema = {"type": "object", "properties": {"text": {"type": "string"}}}

    @server.tool("echo", input_schema=schema)
    async def echo(arguments: dict[str, Any], ctx: RequestContext) -> str:
        holds.started += 1
        return f"one:echo:{arguments.get('text', '')}"

    @server.tool("hold", input_schema=schema)
    async def hold(arguments: dict[str, Any], ctx: RequestContext) -> str:
        holds.running += 1
        holds.started += 1
        if holds.running == holds.target:
            holds.reached.set()
        try:
            await holds.release.wait()
        finally:
            holds.running -= 1
        return "released"

    return server, holds


@attrs.frozen
class Face:
    """A running proxy face and what its one client (the run's bundle) holds."""

    url: str
    chain: CertificateChain
    proxy: ProxyHandle
    holds: Holds

    def client(self) -> httpx.AsyncClient:
        """An HTTP client holding the run's client certificate, as every local client does."""
        return httpx.AsyncClient(verify=self.chain.client_ssl_context(), timeout=30)

    @property
    def session_count(self) -> int:
        return len(self.proxy.server.mcp.sessions)


# The proxy face's own settings (its bounds on requests), which a test changes a field of.
FACE_SETTINGS: HttpSettings = attrs.fields(HttpFace).settings.default  # type: ignore[assignment]
PER_SESSION = FACE_SETTINGS.max_requests_per_session or 0


@contextlib.asynccontextmanager
async def mtls_face(**changes: Any) -> AsyncIterator[Face]:
    """The proxy's mutual-TLS face with its own settings, ``changes`` made to them."""
    chain = CertificateChain.generate()
    server, holds = build_upstream()
    face = HttpFace(chain=chain, settings=attrs.evolve(FACE_SETTINGS, **changes))
    async with trio.open_nursery() as nursery:
        proxy: ProxyHandle = await nursery.start(
            functools.partial(serve_proxy, [InProcessUpstream("one", server)], face)
        )
        yield Face(proxy.http_url, chain, proxy, holds)
        nursery.cancel_scope.cancel()


def session_headers(session_id: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "accept": ACCEPT_BOTH,
        "mcp-session-id": session_id,
        "mcp-protocol-version": VERSION,
    }


def rpc(request_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}


async def post_initialize(client: httpx.AsyncClient, url: str) -> httpx.Response:
    params = {
        "protocolVersion": VERSION,
        "capabilities": {},
        "clientInfo": {"name": "flood", "version": "1"},
    }
    headers = {"content-type": "application/json", "accept": ACCEPT_BOTH}
    return await client.post(url, json=rpc(0, "initialize", params), headers=headers)


async def open_session(client: httpx.AsyncClient, url: str) -> str:
    """A handshake-era session, initialized; its id."""
    response = await post_initialize(client, url)
    assert response.status_code == 200, response.text
    session_id = response.headers["mcp-session-id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    done = await client.post(url, json=note, headers=session_headers(session_id))
    assert done.status_code == 202, done.text
    return session_id


def answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message of a POST's answer (plain JSON, or the last SSE data line)."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[6:] for line in response.text.splitlines() if line.startswith("data: {")]
        found: dict[str, Any] = json.loads(data[-1])
        return found
    body: dict[str, Any] = response.json()
    return body


async def call_echo(client: httpx.AsyncClient, url: str, session_id: str, text: str) -> str:
    response = await client.post(
        url,
        json=rpc(7, "tools/call", {"name": "one__echo", "arguments": {"text": text}}),
        headers=session_headers(session_id),
    )
    assert response.status_code == 200, response.text
    content = answer(response)["result"]["content"]
    return str(content[0]["text"])


def refusal(response: httpx.Response) -> tuple[int, int, str]:
    """An HTTP refusal's status and the code and message of its JSON-RPC error body."""
    error = response.json()["error"]
    return response.status_code, int(error["code"]), str(error["message"])


# ---- sandboxes below a CLI process ---------------------------------------------------------


def _cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def sandbox_ports(root: int) -> set[int]:
    """The sandboxes running below ``root``: the ports their wardens publish (``-p``)."""
    ports = set()
    for info in descendants(root):
        for flag, value in itertools.pairwise(_cmdline(info.pid)):
            if flag == b"-p" and b"trio_sandbox.warden" in b" ".join(_cmdline(info.pid)):
                ports.add(int(value.split(b":")[1]))
    return ports


async def wait_for_sleep(root: int, marker: str) -> None:
    """Until a ``sleep MARKER`` runs below ``root`` (a command of a call is in flight)."""
    with trio.fail_after(30):
        while True:
            if any(
                _cmdline(info.pid)[:2] == [b"sleep", marker.encode()] for info in descendants(root)
            ):
                return
            await trio.sleep(0.05)


async def wait_for_sandboxes(root: int, ports: set[int], within: float) -> None:
    """Until exactly the sandboxes on ``ports`` run below ``root``."""
    with trio.fail_after(within):
        while True:
            if sandbox_ports(root) == ports:
                return
            await trio.sleep(0.05)


async def start_url_child(
    user: SandboxUser,
    argv: list[str],
    workspace: Path,
    *,
    task_status: trio.TaskStatus[tuple[trio.Process, str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``python ARGV`` as ``user`` in ``workspace`` (a child that prints ``URL <url>`` and
    serves until its stdin ends) until it exits; reports the process, its URL and the write end
    of its stdin (close it to stop the child). Cancelled: its whole process group is killed."""
    command = user.command(user.python, *argv)
    env = user.env({"HOME": str(workspace), "TRIO_SANDBOX_LOG": "WARNING"})
    reader, writer = os.pipe()
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            functools.partial(
                trio.run_process,
                command,
                stdin=reader,
                stdout=subprocess.PIPE,
                env=env,
                cwd=workspace,
                start_new_session=True,
                deliver_cancel=kill_group,
            )
        )
        os.close(reader)
        assert process.stdout is not None
        first = b""
        while not first.endswith(b"\n"):
            chunk = await process.stdout.receive_some()
            assert chunk, f"the child ended before its URL: {first!r}"
            first += chunk
        task_status.started((process, first.decode().split()[1], writer))
