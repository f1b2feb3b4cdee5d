"""``trio-sandbox auth login|status|logout`` as real child processes, as root and as the
ordinary user, against the SDK's authorization server; the test is the person's browser. Then
``trio-sandbox proxy`` serving the logged-in upstream, and every token and secret the server ever
issued looked for in everything the commands printed and in the audit log: none."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from tests.cli.cli_harness import RunningCli, run_cli, start_cli
from tests.oauth.auth_world import AuthWorld, open_auth_world
from tests.oauth.oauth_harness import AuthServer, auth_server_running, browse, device_login
from tests.support.sandbox_users import SandboxUser
from trio_sandbox.cli._auth_actions import stored_status
from trio_sandbox.mcp import open_mcp_client
from trio_sandbox.oauth import AuthState, OAuthError, Tokens, revocation_endpoint


def write_config(home: Path, server: AuthServer, user: SandboxUser | None = None) -> Path:
    config = home / "servers.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "sdk": {"url": server.url, "auth": "oauth"},
                    "plain": {"url": "http://127.0.0.1:9/mcp"},
                }
            }
        )
    )
    if user is not None:
        os.chown(config, user.uid, user.gid)
    return config


async def login(home: Path, config: Path, user: SandboxUser | None = None) -> tuple[str, str]:
    """``auth login sdk`` as a child: open the URL it prints; its (stdout, stderr)."""
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            start_cli(
                ["auth", "login", "sdk", "--config", str(config)],
                home=home,
                user=user,
                stdout=subprocess.PIPE,
            )
        )
        running = RunningCli(process)
        nursery.start_soon(running.collect)
        with trio.fail_after(30):
            found = await running.wait_for(r"^Open this URL to authorize sdk: (\S+)$")
            await browse(found.group(1))
            assert process.stdout is not None
            out = b""
            async for chunk in process.stdout:
                out += chunk
            await process.wait()
    assert process.returncode == 0, "\n".join(running.lines)
    return out.decode(), "\n".join(running.lines)


def token_file(home: Path) -> Path:
    return home / "state" / "trio-sandbox" / "oauth" / "sdk.json"


async def test_login_status_logout(sandbox_user: SandboxUser, workspace: Path) -> None:
    async with auth_server_running() as server:
        config = write_config(workspace, server, sandbox_user)
        outputs: list[str] = []

        status = await run_cli(
            ["auth", "status", "--config", str(config)], home=workspace, user=sandbox_user
        )
        assert status.returncode == 1, status.stderr  # a person must act (review minor b)
        assert (
            status.stdout
            == "sdk: needs_login (not logged in)\n  run: trio-sandbox auth login sdk\n"
        )

        out, err = await login(workspace, config, sandbox_user)
        outputs += [out, err]
        assert out.startswith("logged in to sdk (scopes mcp, expires ")
        stored = token_file(workspace)
        info = stored.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert (info.st_uid, info.st_gid) == (sandbox_user.uid, sandbox_user.gid)
        assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
        tokens = json.loads(stored.read_text())

        for args in (["--json"], ["--check", "--json"], []):
            status = await run_cli(
                ["auth", "status", "--config", str(config), *args],
                home=workspace,
                user=sandbox_user,
            )
            assert status.returncode == 0, status.stderr
            outputs += [status.stdout, status.stderr]
        report = json.loads(outputs[-4])
        assert report["name"] == "sdk"
        assert report["state"] == "logged_in"
        assert report["scope"] == "mcp"
        assert report["expires_at"] == pytest.approx(tokens["expires_at"])
        assert outputs[-2].startswith("sdk: logged_in (scopes mcp, expires ")

        logout = await run_cli(
            ["auth", "logout", "sdk", "--config", str(config)], home=workspace, user=sandbox_user
        )
        assert logout.returncode == 0, logout.stderr
        outputs += [logout.stdout, logout.stderr]
        assert logout.stdout == "logged out of sdk (tokens revoked at the server and forgotten)\n"
        assert not stored.exists()
        # Revoked at the server: the refresh token is refused there now.
        async with httpx.AsyncClient() as http:
            refused = await http.post(
                tokens["token_endpoint"],
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": tokens["refresh_token"],
                    "client_id": tokens["client_id"],
                    "client_secret": tokens["client_secret"],
                },
            )
        assert refused.json()["error"] == "invalid_grant"
        again = await run_cli(
            ["auth", "logout", "sdk", "--config", str(config)], home=workspace, user=sandbox_user
        )
        assert again.stdout == "sdk: not logged in\n"

        issued = (await server.stats())["issued"]
        assert issued
        for secret in issued:
            for text in outputs:
                assert secret not in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["auth", "login", "nobody", "--config", "{config}"], "has no upstream 'nobody'"),
        (["auth", "login", "plain", "--config", "{config}"], "has no upstream 'plain'"),
        (["auth", "status", "plain", "--config", "{config}"], "its OAuth upstreams: sdk"),
        (["auth", "login", "sdk"], "the following arguments are required: --config"),
        (["auth", "login", "sdk", "--config", "{missing}"], "--config: cannot read"),
        (["auth", "login", "sdk", "--config", "{config}", "--timeout", "0"], "--timeout"),
        (["auth"], "the following arguments are required: ACTION"),
    ],
)
async def test_usage_errors_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    config = tmp_path / "servers.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "sdk": {"url": "http://127.0.0.1:9/mcp", "auth": "oauth"},
                    "plain": {"url": "http://127.0.0.1:9/mcp"},
                }
            }
        )
    )
    argv = [a.format(config=config, missing=tmp_path / "missing.json") for a in args]
    done = await run_cli(argv, home=tmp_path)
    assert done.returncode == 2, done
    assert expected in done.stderr


async def test_the_proxy_serves_the_login_and_says_no_secret(tmp_path: Path) -> None:
    home = tmp_path
    audit = home / "audit.jsonl"
    async with auth_server_running() as server:
        config = write_config(home, server)
        outputs = list(await login(home, config))
        tokens = json.loads(token_file(home).read_text())
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                start_cli(
                    [
                        "proxy",
                        "--plain-http",
                        "--config",
                        str(config),
                        "--audit-log",
                        str(audit),
                        "--list-timeout",
                        "5",
                    ],
                    home=home,
                    stdout=subprocess.PIPE,
                )
            )
            running = RunningCli(process)
            nursery.start_soon(running.collect)
            with trio.fail_after(30):
                url = (await running.wait_for(r"listening at (\S+)")).group(1)
            sdk_status = json.loads(
                (await running.wait_for(r'upstream (\{.*"name": "sdk".*\})')).group(1)
            )
            assert sdk_status["connected"] is True
            assert sdk_status["auth"]["state"] == "logged_in"
            async with open_mcp_client(url) as client:
                result = await client.call_tool("sdk__echo", {"text": "through the proxy"})
                assert result.text_content == "oauth-echo:through the proxy"
                # The upstream echoes its own tokens back: redacted on the way out.
                for secret in (tokens["access_token"], tokens["refresh_token"]):
                    leaked = await client.call_tool("sdk__echo", {"text": secret})
                    outputs.append(json.dumps(leaked.to_json()))
                await server.revoke_refresh()
                await server.expire_access()
                refused = await client.call_tool("sdk__echo", {"text": "x"})
                assert refused.is_error
                assert "trio-sandbox auth login sdk" in refused.text_content
                outputs.append(json.dumps(refused.to_json()))
            process.send_signal(signal.SIGINT)
            with trio.fail_after(15):
                await process.wait()
            assert process.stdout is not None
            outputs.append((await process.stdout.receive_some(1 << 20)).decode())
            outputs.append("\n".join(running.lines))
        records = audit.read_text()
        assert '"sdk__echo"' in records
        outputs.append(records)
        issued = (await server.stats())["issued"]
        assert tokens["access_token"] in issued
        for secret in issued:
            for text in outputs:
                assert secret not in text


async def test_device_login_shows_the_code_and_never_a_token(tmp_path: Path) -> None:
    async with open_auth_world() as world:
        _, done = await device_login(world, tmp_path)
    assert done.returncode == 0, done.stderr
    prompt = f"To authorize sdk, open {world.base}/activate and enter the code WDJB-MJHT"
    assert prompt in done.stderr
    assert "Open this URL" not in done.stderr  # no browser flow, no loopback listener
    assert done.stdout.startswith("logged in to sdk (scopes ")
    stored = json.loads(token_file(tmp_path).read_text())
    for secret in (stored["access_token"], stored["refresh_token"]):
        assert secret not in done.stdout + done.stderr


async def test_client_credentials_serve_unattended_from_the_config(tmp_path: Path) -> None:
    secret = "robot-secret-" + "x" * 24
    audit = tmp_path / "audit.jsonl"
    async with open_auth_world() as world:
        world.clients["robot"] = secret
        config = tmp_path / "servers.json"
        config.write_text(
            json.dumps(
                {
                    "mcpServers": {
                        "robot": {
                            "url": world.mcp_url,
                            "auth": "oauth",
                            "oauth": {
                                "grant": "client_credentials",
                                "clientId": "robot",
                                "clientSecret": "${ROBOT_SECRET}",
                                "issuer": world.issuer,
                            },
                        }
                    }
                }
            )
        )
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                start_cli(
                    ["proxy", "--plain-http", "--config", str(config), "--audit-log", str(audit)],
                    home=tmp_path,
                    extra_env={"ROBOT_SECRET": secret},
                )
            )
            running = RunningCli(process)
            nursery.start_soon(running.collect)
            with trio.fail_after(30):
                url = (await running.wait_for(r"listening at (\S+)")).group(1)
            async with open_mcp_client(url) as client:
                result = await client.call_tool("robot__whoami", {})
                assert not result.is_error, result.text_content
                echoed = await client.call_tool("robot__whoami", {})
            process.send_signal(signal.SIGINT)
            with trio.fail_after(15):
                await process.wait()
        assert world.grants == {"client_credentials": 1}
        assert world.authorizations == []  # no person, no browser
        issued = list(world.tokens)
    outputs = ["\n".join(running.lines), audit.read_text(), json.dumps(echoed.to_json())]
    for value in [secret, *issued]:
        for text in outputs:
            assert value not in text


def test_status_from_the_store_alone() -> None:
    url = "https://mcp.example/mcp"
    tokens = Tokens(
        server_url=url,
        issuer="https://as.example",
        token_endpoint="https://as.example/token",
        client_id="c",
        client_secret=None,
        token_endpoint_auth_method="none",
        access_token="a" * 20,
        refresh_token="r" * 20,
        expires_at=1000.0,
        scope="mcp",
    )
    assert stored_status(None, url, 0).state is AuthState.NEEDS_LOGIN
    assert stored_status(tokens, url, 0).state is AuthState.LOGGED_IN
    assert stored_status(tokens, url, 990).state is AuthState.EXPIRED  # refreshed at next use
    no_refresh = attrs.evolve(tokens, refresh_token=None)
    assert stored_status(no_refresh, url, 990).state is AuthState.NEEDS_LOGIN
    other = stored_status(tokens, "https://other.example/mcp", 0)
    assert other.state is AuthState.NEEDS_LOGIN
    assert "another server" in (other.reason or "")
    robot = stored_status(None, url, 0, unattended=True)
    assert robot.state is AuthState.EXPIRED
    assert "client credentials" in (robot.reason or "")


async def test_a_failing_revocation_is_reported_and_the_tokens_still_forgotten(
    tmp_path: Path,
) -> None:
    # The SDK's revocation endpoint wants client_secret in the form even from a client that
    # authenticates with Basic: it answers 400, which logout reports, and forgets all the same.
    async with auth_server_running(client_auth="asked") as server:
        config = write_config(tmp_path, server)
        await login(tmp_path, config)
        tokens = json.loads(token_file(tmp_path).read_text())
        assert tokens["token_endpoint_auth_method"] == "client_secret_basic"
        logout = await run_cli(["auth", "logout", "sdk", "--config", str(config)], home=tmp_path)
        assert logout.returncode == 0, logout.stderr
        assert logout.stdout == (
            "logged out of sdk (tokens forgotten; revocation failed: HTTP 400; HTTP 400)\n"
        )
        assert not token_file(tmp_path).exists()
        for secret in (await server.stats())["issued"]:
            assert secret not in logout.stdout + logout.stderr


async def _device_login(world: AuthWorld, home: Path) -> Path:
    config, done = await device_login(world, home)
    assert done.returncode == 0, done.stderr
    return config


async def test_logout_sends_tokens_only_to_a_checked_revocation_endpoint(tmp_path: Path) -> None:
    """(Review finding 5.) Plain http off this machine is refused before anything is sent; a
    huge metadata document is read bounded; the tokens are forgotten either way."""
    async with open_auth_world() as world:
        config = await _device_login(world, tmp_path)
        world.metadata_extra = {"revocation_endpoint": "http://revoke.example/revoke"}
        logout = await run_cli(["auth", "logout", "sdk", "--config", str(config)], home=tmp_path)
        assert logout.returncode == 0, logout.stderr
        assert "tokens forgotten, not revoked: the revocation_endpoint" in logout.stdout
        assert "must be an https URL" in logout.stdout
        assert not token_file(tmp_path).exists()
        world.metadata_extra = {}
        await _device_login(world, tmp_path)
        world.huge_metadata = True
        with trio.fail_after(30):
            logout = await run_cli(
                ["auth", "logout", "sdk", "--config", str(config)], home=tmp_path
            )
        assert "not revoked" in logout.stdout, logout.stdout
        assert "larger than" in logout.stdout
        assert not token_file(tmp_path).exists()


async def test_a_remote_servers_tokens_are_never_revoked_on_this_machine() -> None:
    async with open_auth_world() as world, httpx.AsyncClient() as http:
        tokens = Tokens(
            server_url="https://mcp.example/mcp",
            issuer=world.base,  # loopback: a remote server's login cannot point here
            token_endpoint=f"{world.base}/token",
            client_id="c",
            client_secret="a-client-secret",
            token_endpoint_auth_method="client_secret_post",
            access_token="an-access-token",
            refresh_token="a-refresh-token",
            expires_at=None,
            scope=None,
        )
        with pytest.raises(OAuthError, match="points to this machine"):
            await revocation_endpoint(http, tokens)
        assert not world.requests


async def test_no_terminal_escape_from_the_server_reaches_the_terminal(tmp_path: Path) -> None:
    """(Review finding 6.) A granted scope with an escape sequence is refused at login; one in
    a token file (written before this check) is shown as codes by status."""
    async with open_auth_world() as world:
        world.token_extra = {"scope": "mcp \x1b]0;owned\x07\x1b[2J"}
        config, refused = await device_login(world, tmp_path)
        assert refused.returncode == 1
        assert "scope is not space-separated scope tokens" in refused.stderr
        assert "\x1b" not in refused.stdout + refused.stderr
        world.token_extra = {}
        await _device_login(world, tmp_path)
        stored = json.loads(token_file(tmp_path).read_text())
        stored["scope"] = "mcp \x1b[2J"
        token_file(tmp_path).write_text(json.dumps(stored))
        status = await run_cli(["auth", "status", "--config", str(config)], home=tmp_path)
        assert "\x1b" not in status.stdout + status.stderr
        assert "scopes mcp \\x1b[2J" in status.stdout


async def test_logout_leaves_another_servers_login_alone(tmp_path: Path) -> None:
    """(Review minor c.) The same upstream name in another configuration, another URL: the
    stored login is neither revoked nor removed."""
    async with open_auth_world() as world:
        await _device_login(world, tmp_path)
        other = tmp_path / "other.json"
        other.write_text(
            json.dumps({"mcpServers": {"sdk": {"url": f"{world.base}/other", "auth": "oauth"}}})
        )
        before = token_file(tmp_path).read_text()
        asked = dict(world.requests)
        logout = await run_cli(["auth", "logout", "sdk", "--config", str(other)], home=tmp_path)
        assert logout.returncode == 1
        assert f"is for {world.mcp_url}, not {world.base}/other" in logout.stderr
        assert token_file(tmp_path).read_text() == before
        assert dict(world.requests) == asked  # not even its metadata was asked for
