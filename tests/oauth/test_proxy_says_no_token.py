"""What the proxy prints and logs about an upstream never shows a token, even when the
upstream's own error echoes the credential the proxy sent it (review finding 4)."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.cli.cli_harness import RunningCli, start_cli
from tests.oauth.auth_world import AuthWorld, Receive, Scope, Send, open_auth_world
from tests.oauth.oauth_harness import device_login


def echo_authorization_in_list_errors(world: AuthWorld) -> None:
    """tools/list answers a JSON-RPC error that carries the request's Authorization header."""
    inner = world.mcp_app

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await inner(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body) if body else {}
        if isinstance(request, dict) and request.get("method") == "tools/list":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            error = {"code": -32603, "message": f"cannot list for {headers.get('authorization')}"}
            out = json.dumps({"jsonrpc": "2.0", "id": request["id"], "error": error}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": out})
            return
        sent = False

        async def again() -> MutableMapping[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await inner(scope, again, send)

    world.mcp_app = app  # type: ignore[assignment]


async def test_an_upstream_echoing_the_token_in_an_error_is_printed_redacted(
    tmp_path: Path,
) -> None:
    async with open_auth_world() as world:
        config, done = await device_login(world, tmp_path)
        assert done.returncode == 0, done.stderr
        stored = tmp_path / "state" / "trio-sandbox" / "oauth" / "sdk.json"
        access = json.loads(stored.read_text())["access_token"]
        echo_authorization_in_list_errors(world)
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                start_cli(
                    ["proxy", "--plain-http", "--config", str(config), "--list-timeout", "5"],
                    home=tmp_path,
                    stdout=subprocess.PIPE,
                )
            )
            running = RunningCli(process)
            nursery.start_soon(running.collect)
            with trio.fail_after(30):
                line = await running.wait_for(r'upstream (\{.*"name": "sdk".*\})')
                await running.wait_for(r"listening at (\S+)")
            status = json.loads(line.group(1))
            assert status["last_error"].startswith("listing failed: cannot list for Bearer ")
            process.send_signal(signal.SIGINT)
            with trio.fail_after(15):
                await process.wait()
    assert world.mcp_authorizations[-1] == f"Bearer {access}"  # the upstream did see it
    assert access not in "\n".join(running.lines)


async def test_the_proxys_log_lines_are_redacted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.oauth.oauth_harness import auth_server_running, log_in
    from tests.proxy.proxy_harness import proxy_running
    from trio_sandbox.oauth import FileTokenStore, OAuthSettings
    from trio_sandbox.proxy import HttpUpstream

    async with auth_server_running() as server:
        store = FileTokenStore(tmp_path / "oauth")
        tokens = await log_in(server, store, "sdk")
        spec = HttpUpstream("sdk", server.url, oauth=OAuthSettings())
        async with proxy_running([spec], token_store=store) as proxy:
            with trio.fail_after(15):
                while not proxy.upstreams["sdk"].status.connected:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            logging.getLogger("trio_sandbox.proxy").warning("echoed: %s", tokens.access_token)
    assert "echoed: " in caplog.text
    assert tokens.access_token not in caplog.text


async def test_a_client_secret_too_short_to_redact_is_a_config_error(tmp_path: Path) -> None:
    """(Review finding 7.) Given in code rather than in a file: refused all the same."""
    from tests.proxy.proxy_harness import proxy_running
    from trio_sandbox.oauth import FileTokenStore, OAuthSettings
    from trio_sandbox.proxy import ConfigError, HttpUpstream

    settings = OAuthSettings(client_id="c", client_secret="a0", issuer="https://as.example")
    spec = HttpUpstream("sdk", "https://mcp.example/mcp", oauth=settings)
    refused = pytest.RaisesExc(ConfigError, match="client secret is too short")
    with pytest.RaisesGroup(refused, flatten_subgroups=True):
        async with proxy_running([spec], token_store=FileTokenStore(tmp_path / "oauth")):
            pass  # pragma: no cover
