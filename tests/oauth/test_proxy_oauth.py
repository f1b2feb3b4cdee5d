"""An ``"auth": "oauth"`` upstream behind the proxy, against a real authorization server (the
official SDK's, as a child process): served with the stored token, refreshed without anyone,
one refresh for many waiting calls, a revoked grant that names the login to run while the rest
keeps serving, an authorization server that is down and comes back, a restarted upstream that
keeps its authorization, and no token or secret in anything the proxy says."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from tests.cli.cli_harness import free_port
from tests.oauth.oauth_harness import AuthServer, auth_server_running, log_in
from tests.proxy.proxy_harness import build_upstream, proxy_running
from trio_sandbox.mcp import McpClient, open_mcp_client
from trio_sandbox.oauth import FileTokenStore, OAuthSettings, TokenStoreBusy
from trio_sandbox.proxy import HttpUpstream, InProcessUpstream, ProxyHandle, UpstreamSpec


def specs(server: AuthServer) -> list[UpstreamSpec]:
    local, _ = build_upstream("local")
    return [
        HttpUpstream("sdk", server.url, oauth=OAuthSettings()),
        InProcessUpstream("local", local),
    ]


@asynccontextmanager
async def proxied(
    server: AuthServer, store: FileTokenStore
) -> AsyncIterator[tuple[ProxyHandle, McpClient]]:
    async with (
        proxy_running(
            specs(server), token_store=store, reconnect_backoff_max=0.3, call_wait=5
        ) as proxy,
        open_mcp_client(proxy.http_url) as client,
    ):
        yield proxy, client


async def wait_connected(proxy: ProxyHandle, name: str, limit: float = 15) -> None:
    with trio.fail_after(limit):
        while not proxy.upstreams[name].status.connected:  # noqa: ASYNC110
            await trio.sleep(0.05)


async def test_stored_tokens_serve_and_expiry_is_refreshed_without_anyone(
    tmp_path: Path,
) -> None:
    # 61 s tokens: within the client's 60 s leeway after a second, so it refreshes them itself.
    async with auth_server_running(lifetime=61) as server:
        store = FileTokenStore(tmp_path / "oauth")
        await log_in(server, store, "sdk")
        async with proxied(server, store) as (proxy, client):
            status = proxy.upstreams["sdk"].status
            assert status.connected
            assert status.auth is not None
            names = {tool.name for tool in await client.list_tools()}
            assert {"sdk__echo", "sdk__add", "local__echo"} <= names
            result = await client.call_tool("sdk__echo", {"text": "hello"})
            assert result.text_content == "oauth-echo:hello"
            before = await server.stats()
            await trio.sleep(1.5)
            result = await client.call_tool("sdk__add", {"a": 2, "b": 3})
            assert not result.is_error
            after = await server.stats()
            assert after["refresh_requests"] > before["refresh_requests"]
            stored = store.load("sdk")
            assert stored is not None
            assert stored.access_token in after["issued"][-2:]


async def test_twenty_calls_during_a_refresh_make_one_token_request(tmp_path: Path) -> None:
    async with auth_server_running() as server:
        store = FileTokenStore(tmp_path / "oauth")
        await log_in(server, store, "sdk")
        async with proxied(server, store) as (_, client):
            assert not (await client.call_tool("sdk__echo", {"text": "x"})).is_error
            before = await server.stats()
            # The server forgets every access token: each call's first try gets 401.
            await server.expire_access()
            results: list[str] = []

            async def call(index: int) -> None:
                result = await client.call_tool("sdk__echo", {"text": str(index)})
                assert not result.is_error, result.text_content
                results.append(result.text_content)

            async with trio.open_nursery() as nursery:
                for index in range(20):
                    nursery.start_soon(call, index)
            assert sorted(results) == sorted(f"oauth-echo:{i}" for i in range(20))
            after = await server.stats()
            assert after["token_requests"] - before["token_requests"] == 1
            assert after["refresh_requests"] - before["refresh_requests"] == 1


async def test_a_revoked_grant_names_the_login_and_the_rest_keeps_serving(
    tmp_path: Path,
) -> None:
    async with auth_server_running() as server:
        store = FileTokenStore(tmp_path / "oauth")
        await log_in(server, store, "sdk")
        async with proxied(server, store) as (proxy, client):
            assert not (await client.call_tool("sdk__echo", {"text": "x"})).is_error
            await server.revoke_refresh()
            await server.expire_access()
            with trio.fail_after(10):
                result = await client.call_tool("sdk__echo", {"text": "y"})
            assert result.is_error
            assert "upstream 'sdk'" in result.text_content
            assert "trio-sandbox auth login sdk" in result.text_content
            assert "internal error" not in result.text_content.lower()
            local = await client.call_tool("local__echo", {"text": "still here"})
            assert local.text_content == "local:echo:still here"
            # Its session went; it says why, by name, in its status.
            with trio.fail_after(10):
                while proxy.upstreams["sdk"].status.connected:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            status = proxy.upstreams["sdk"].status
            assert status.auth is not None
            assert status.auth.state.value == "needs_login"
            assert "trio-sandbox auth login sdk" in (status.last_error or "")
            # The next call fails at once, not after the wait for a session.
            with trio.fail_after(2):
                again = await client.call_tool("sdk__echo", {"text": "z"})
            assert again.is_error
            assert "trio-sandbox auth login sdk" in again.text_content
            # The store was not touched by the failure; a login (another process's, in life)
            # replaces the tokens, and the running proxy uses them at its next attempt.
            await log_in(server, store, "sdk")
            await wait_connected(proxy, "sdk")
            result = await client.call_tool("sdk__echo", {"text": "back"})
            assert result.text_content == "oauth-echo:back"
            status = proxy.upstreams["sdk"].status
            assert status.auth is not None
            assert status.auth.state.value == "logged_in"


async def test_an_authorization_server_down_is_retried_reported_and_recovered(
    tmp_path: Path,
) -> None:
    async with auth_server_running() as server:
        store = FileTokenStore(tmp_path / "oauth")
        tokens = await log_in(server, store, "sdk")
        async with proxied(server, store) as (proxy, client):
            await server.token_outage(True)
            await server.expire_access()
            result = await client.call_tool("sdk__echo", {"text": "x"})
            assert result.is_error
            assert "upstream 'sdk'" in result.text_content
            status = proxy.upstreams["sdk"].status
            assert status.auth is not None
            assert status.auth.state.value == "refresh_failing"
            assert status.auth.next_retry_at is not None
            assert "503" in (status.auth.reason or "")
            # Backoff: no hammering of the server while it is down; calls fail at once.
            counted = (await server.stats())["token_requests"]
            for _ in range(5):
                with trio.fail_after(2):
                    failed = await client.call_tool("sdk__echo", {"text": "x"})
                assert failed.is_error
                assert "upstream 'sdk'" in failed.text_content
            assert (await server.stats())["token_requests"] == counted
            # The tokens stay: a refresh that failed forgets nothing.
            kept = store.load("sdk")
            assert kept is not None
            assert kept.refresh_token == tokens.refresh_token
            await server.token_outage(False)
            with trio.fail_after(30):
                while True:
                    result = await client.call_tool("sdk__echo", {"text": "back"})
                    if not result.is_error:
                        break
                    await trio.sleep(0.5)
            assert result.text_content == "oauth-echo:back"
            status = proxy.upstreams["sdk"].status
            assert status.auth is not None
            assert status.auth.state.value == "logged_in"


async def test_a_restarted_upstream_keeps_its_authorization(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "as-state.json"
    store = FileTokenStore(tmp_path / "oauth")
    async with auth_server_running(port=port, state=state) as server:
        tokens = await log_in(server, store, "sdk")
        async with proxied(server, store) as (proxy, client):
            assert not (await client.call_tool("sdk__echo", {"text": "x"})).is_error
            server.process.kill()
            with trio.fail_after(20):
                while proxy.upstreams["sdk"].status.connected:  # noqa: ASYNC110
                    await trio.sleep(0.1)
            down = await client.call_tool("sdk__echo", {"text": "x"})
            assert down.is_error
            assert store.load("sdk") == tokens  # a failing health probe forgets nothing
            async with auth_server_running(port=port, state=state) as restarted:
                await wait_connected(proxy, "sdk", limit=30)
                result = await client.call_tool("sdk__echo", {"text": "again"})
                assert result.text_content == "oauth-echo:again"
                # The same authorization: no new login, no token request at all.
                assert (await restarted.stats())["token_requests"] == 0
    assert store.load("sdk") == tokens


async def test_no_token_or_secret_reaches_a_client(tmp_path: Path) -> None:
    async with auth_server_running() as server:
        store = FileTokenStore(tmp_path / "oauth")
        tokens = await log_in(server, store, "sdk")
        async with proxied(server, store) as (_, client):
            # The upstream itself sends the token back (a hostile or careless server).
            leaked = await client.call_tool("sdk__echo", {"text": tokens.access_token})
            assert tokens.access_token not in json.dumps(leaked.to_json())
            assert tokens.refresh_token is not None
            leaked = await client.call_tool("sdk__echo", {"text": tokens.refresh_token})
            assert tokens.refresh_token not in json.dumps(leaked.to_json())
    assert os.stat(store.path_of("sdk")).st_mode & 0o777 == 0o600


async def test_a_proxy_started_before_any_login_says_which_login_to_run(
    tmp_path: Path,
) -> None:
    async with auth_server_running() as server:
        store = FileTokenStore(tmp_path / "oauth")
        async with proxied(server, store) as (proxy, client):
            status = proxy.upstreams["sdk"].status
            assert not status.connected
            assert status.auth is not None
            assert status.auth.state.value == "needs_login"
            assert "trio-sandbox auth login sdk" in (status.last_error or "")
            names = {tool.name for tool in await client.list_tools()}
            assert "local__echo" in names
            assert not any(name.startswith("sdk__") for name in names)
            # Never listed, yet a call by its prefix gets the reason, not "unknown tool".
            with trio.fail_after(2):
                result = await client.call_tool("sdk__echo", {"text": "x"})
            assert result.is_error
            assert "trio-sandbox auth login sdk" in result.text_content
            assert (await client.call_tool("local__echo", {"text": "y"})).text_content == (
                "local:echo:y"
            )
            await log_in(server, store, "sdk")
            await wait_connected(proxy, "sdk")
            with trio.fail_after(10):
                while "sdk__echo" not in {tool.name for tool in await client.list_tools()}:  # noqa: ASYNC110
                    await trio.sleep(0.1)
            result = await client.call_tool("sdk__echo", {"text": "now"})
            assert result.text_content == "oauth-echo:now"


async def test_a_client_registered_for_basic_authentication_works_with_the_sdk(
    tmp_path: Path,
) -> None:
    # The SDK's server keeps the method the client asked for; ours asks for
    # client_secret_basic where "none" is not offered, and names itself in the form too.
    async with auth_server_running(client_auth="asked") as server:
        store = FileTokenStore(tmp_path / "oauth")
        tokens = await log_in(server, store, "sdk")
        assert tokens.token_endpoint_auth_method == "client_secret_basic"
        await server.expire_access()
        async with proxied(server, store) as (_, client):
            result = await client.call_tool("sdk__echo", {"text": "basic"})
            assert result.text_content == "oauth-echo:basic"
        assert (await server.stats())["refresh_requests"] == 1


async def test_a_lock_held_by_another_process_stalls_no_call_and_no_ping(tmp_path: Path) -> None:
    """(Review finding 1.) Another process of the user holds the store's lock: the proxy's
    calls and pings (which read the store for every request) go on at once."""
    async with auth_server_running() as server:
        store = FileTokenStore(tmp_path / "oauth", lock_wait=0)
        await log_in(server, store, "sdk")
        async with proxied(server, store) as (proxy, client):
            await wait_connected(proxy, "sdk")
            holder = await trio.lowlevel.open_process(
                ["flock", "-x", "--no-fork", str(tmp_path / "oauth" / ".lock"), "sleep", "30"]
            )
            try:
                with trio.fail_after(5):
                    while True:  # until the holder has the lock
                        try:
                            FileTokenStore(tmp_path / "oauth", lock_wait=0).delete("none")
                        except TokenStoreBusy:
                            break
                        await trio.sleep(0.02)
                started = trio.current_time()
                with trio.fail_after(2):
                    result = await client.call_tool("sdk__echo", {"text": "locked"})
                    await client.ping()
                assert result.text_content == "oauth-echo:locked"
                assert trio.current_time() - started < 1
            finally:
                holder.kill()
                await holder.wait()
