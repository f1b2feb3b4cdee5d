"""The Streamable HTTP face over real hypercorn: refusals, session lifecycle, batches, eras."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import trio

from tests.mcp.mcp_server_harness import (
    ACCEPT_BOTH,
    initialize,
    post_stateless,
    serve,
    session_headers,
    sse_messages,
)
from trio_sandbox.mcp import (
    HttpSettings,
    Implementation,
    McpHttpApp,
    McpServer,
    RequestContext,
    ToolReturn,
    serve_http,
)


def make_server() -> McpServer:
    server = McpServer(Implementation("http-test", "1"))

    @server.tool("echo", description="echo", input_schema={"type": "object"})
    async def echo(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        return repr(sorted(arguments))

    return server


def rpc(request_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        body["params"] = params
    return body


async def test_session_lifecycle_ends_with_404_after_delete() -> None:
    async with serve(make_server()) as served:
        session_id = await initialize(served)
        assert all(0x21 <= ord(c) <= 0x7E for c in session_id)
        headers = session_headers(session_id)
        listed = await served.client.post(served.url, json=rpc(1, "tools/list"), headers=headers)
        assert listed.status_code == 200
        assert [t["name"] for t in listed.json()["result"]["tools"]] == ["echo"]
        # Handshake-era results stay exactly as the 2025 schema has them.
        ping = await served.client.post(served.url, json=rpc(2, "ping"), headers=headers)
        assert ping.json() == {"jsonrpc": "2.0", "id": 2, "result": {}}
        level = await served.client.post(
            served.url, json=rpc(3, "logging/setLevel", {"level": "info"}), headers=headers
        )
        assert level.json()["result"] == {}
        assert served.app.session_count == 1
        deleted = await served.client.delete(served.url, headers=headers)
        assert deleted.status_code == 204
        assert served.app.session_count == 0
        after = await served.client.post(served.url, json=rpc(4, "tools/list"), headers=headers)
        assert after.status_code == 404
        again = await served.client.delete(served.url, headers=headers)
        assert again.status_code == 404


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ({"host": "evil.example.com"}, 421),
        ({"host": "evil.example.com:80", "origin": "http://evil.example.com"}, 421),
        ({"origin": "http://evil.example.com"}, 403),
        ({"origin": "https://attacker.test:8443"}, 403),
    ],
)
async def test_dns_rebinding_refused(extra: dict[str, str], status: int) -> None:
    async with serve(make_server()) as served:
        headers = {"content-type": "application/json", "accept": ACCEPT_BOTH, **extra}
        body = rpc(1, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}})
        response = await served.client.post(served.url, json=body, headers=headers)
        assert response.status_code == status
        assert response.json()["error"]["code"] < 0
        assert served.app.session_count == 0


async def test_loopback_origin_accepted() -> None:
    async with serve(make_server()) as served:
        port = served.url.split(":")[2].split("/")[0]
        headers = {
            "content-type": "application/json",
            "accept": ACCEPT_BOTH,
            "origin": f"http://localhost:{port}",
        }
        body = rpc(
            1,
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {}},
        )
        response = await served.client.post(served.url, json=body, headers=headers)
        assert response.status_code == 200


async def test_wrong_accept_content_type_and_size() -> None:
    async with serve(make_server(), HttpSettings(max_body_bytes=1000)) as served:
        body = rpc(1, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}})
        only_json = {"content-type": "application/json", "accept": "application/json"}
        response = await served.client.post(served.url, json=body, headers=only_json)
        assert response.status_code == 406
        as_text = {"content-type": "text/plain", "accept": ACCEPT_BOTH}
        response = await served.client.post(served.url, json=body, headers=as_text)
        assert response.status_code == 415
        big = rpc(1, "initialize", {"protocolVersion": "2025-11-25", "pad": "x" * 2000})
        headers = {"content-type": "application/json", "accept": ACCEPT_BOTH}
        response = await served.client.post(served.url, json=big, headers=headers)
        assert response.status_code == 413
        assert served.app.session_count == 0


async def test_get_and_delete_without_session_are_405() -> None:
    async with serve(make_server()) as served:
        got = await served.client.get(served.url, headers={"accept": "text/event-stream"})
        assert got.status_code == 405
        deleted = await served.client.delete(served.url)
        assert deleted.status_code == 405
        unknown = await served.client.get(
            served.url, headers={"accept": "text/event-stream", "mcp-session-id": "nope"}
        )
        assert unknown.status_code == 404


async def test_request_without_session_needs_initialize() -> None:
    async with serve(make_server()) as served:
        headers = {"content-type": "application/json", "accept": ACCEPT_BOTH}
        response = await served.client.post(served.url, json=rpc(1, "tools/list"), headers=headers)
        assert response.status_code == 400


@pytest.mark.parametrize(
    ("version", "allowed"),
    [("2025-03-26", True), ("2024-11-05", False), ("2025-06-18", False), ("2025-11-25", False)],
)
async def test_batches_only_in_2025_03_26(version: str, allowed: bool) -> None:
    async with serve(make_server()) as served:
        session_id = await initialize(served, version)
        batch = [rpc(1, "tools/list"), rpc(2, "tools/call", {"name": "echo", "arguments": {}})]
        response = await served.client.post(
            served.url, json=batch, headers=session_headers(session_id, version)
        )
        if not allowed:
            assert response.status_code == 400
            return
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        answered = {m["id"] for m in sse_messages(response.text)}
        assert answered == {1, 2}


async def test_stateless_batch_refused() -> None:
    async with serve(make_server()) as served:
        _, answer = await post_stateless(served, "tools/list")
        assert answer["result"]["resultType"] == "complete"
        batch = [rpc(1, "tools/list", {"_meta": {}})]
        headers = {
            "content-type": "application/json",
            "accept": ACCEPT_BOTH,
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": "tools/list",
        }
        response = await served.client.post(served.url, json=batch, headers=headers)
        assert response.status_code == 400


@pytest.mark.parametrize("checkpoints", [0, 1, 2, 3, 5, 8])
async def test_cancelling_serve_http_while_it_starts_stops_it(checkpoints: int) -> None:
    """A cancel that lands while hypercorn binds its sockets (Ctrl-C during a sandbox start) must
    stop the server, not leave it shielded and waiting for a shutdown that never comes."""
    app = McpHttpApp(McpServer(Implementation("start-cancel", "1")))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(serve_http, app))
            for _ in range(checkpoints):
                await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
