"""The test authorization server (``tests.oauth.sdk_auth_server``) as a child process, and what
the OAuth tests share."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
import trio

from tests.cli.cli_harness import Finished, run_cli
from tests.conformance.child_processes import start_url_printing_child
from tests.oauth.auth_world import AuthWorld
from trio_sandbox.oauth import (
    LoopbackUserAgent,
    OAuthClient,
    OAuthSettings,
    Tokens,
    TokenStore,
)

REPO = Path(__file__).resolve().parents[2]


@attrs.define(eq=False)
class AuthServer:
    """The running server: its MCP URL, and its test controls."""

    url: str
    process: trio.Process

    @property
    def issuer(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    async def _control(self, method: str, path: str) -> Any:
        async with httpx.AsyncClient() as http:
            response = await http.request(method, f"{self.issuer}{path}")
            response.raise_for_status()
            return response.json()

    async def stats(self) -> dict[str, Any]:
        found: dict[str, Any] = await self._control("GET", "/test/stats")
        return found

    async def revoke_refresh(self) -> None:
        await self._control("POST", "/test/revoke-refresh")

    async def expire_access(self) -> None:
        await self._control("POST", "/test/expire-access")

    async def token_outage(self, down: bool) -> None:
        await self._control("POST", f"/test/token-outage?down={int(down)}")


@asynccontextmanager
async def auth_server_running(
    *, port: int = 0, lifetime: int = 3600, state: Path | None = None, client_auth: str = "post"
) -> AsyncIterator[AuthServer]:
    argv = [
        sys.executable,
        "-m",
        "tests.oauth.sdk_auth_server",
        "--port",
        str(port),
        "--lifetime",
        str(lifetime),
    ]
    if state is not None:
        argv += ["--state", str(state)]
    argv += ["--client-auth", client_auth]
    async with trio.open_nursery() as nursery:
        process, url = await start_url_printing_child(nursery, argv, cwd=REPO)
        try:
            yield AuthServer(url, process)
        finally:
            nursery.cancel_scope.cancel()


async def browse(url: str) -> None:
    """The person's browser: open the authorization URL and follow its redirects (to the
    loopback listener)."""
    async with httpx.AsyncClient(follow_redirects=True) as http:
        response = await http.get(url)
        assert response.status_code == 200, response.text


def browser_agent(name: str, nursery: trio.Nursery) -> LoopbackUserAgent:
    """A LoopbackUserAgent whose printed URL a test browser opens at once."""

    def announce(message: str) -> None:
        assert message.startswith(f"Open this URL to authorize {name}: ")
        nursery.start_soon(browse, message.rsplit(": ", 1)[1])

    return LoopbackUserAgent(name, announce=announce, timeout=30)


async def log_in(server: AuthServer, store: TokenStore, name: str) -> Tokens:
    """What ``trio-sandbox auth login NAME`` does, in this process: the whole flow with a
    browser that approves, the tokens saved in ``store``."""
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        client = OAuthClient(
            name, server.url, OAuthSettings(), store, http, user_agent=browser_agent(name, nursery)
        )
        return await client.login()


async def device_login(world: AuthWorld, home: Path) -> tuple[Path, Finished]:
    """``trio-sandbox auth login sdk --device`` as a child, against ``world``'s server (turned
    to offer the device flow); the mcpServers file is written in ``home``."""
    world.device = True
    config = home / "servers.json"
    config.write_text(json.dumps({"mcpServers": {"sdk": {"url": world.mcp_url, "auth": "oauth"}}}))
    done = await run_cli(["auth", "login", "sdk", "--config", str(config), "--device"], home=home)
    return config, done
