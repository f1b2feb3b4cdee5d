"""OAuthClient: one upstream's OAuth client, the MCP HTTP transport's ``HttpAuth``."""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
import httpx

from ..mcp import AuthChallenge
from ._settings import OAuthSettings
from ._status import AuthState, AuthStatus
from ._tokens import Tokens, TokenStore
from ._user_agent import UserAgent

# The device authorization grant's prompt: given the verification URI and the user code.
DevicePrompt = Callable[[str, str], None]


def _ignore_secret(value: str) -> None:
    pass


@attrs.define(eq=False)
class OAuthClient:
    """One upstream's OAuth client; lives as long as the proxy (reconnects and failed health
    probes keep it, so they keep its tokens).

    ``http`` is for the authorization server (the caller owns it). ``user_agent`` None means
    unattended: whatever needs a person raises :class:`LoginRequired`. ``on_secret`` is called
    with every access token, refresh token and client secret obtained, before it is used or
    stored (the proxy registers each with redaction). ``now`` is the wall clock of expiries.
    """

    name: str
    server_url: str
    settings: OAuthSettings
    store: TokenStore
    http: httpx.AsyncClient
    user_agent: UserAgent | None = None
    on_secret: Callable[[str], None] = _ignore_secret
    now: Callable[[], float] = time.time

    async def login(self, *, device_prompt: DevicePrompt | None = None) -> Tokens:
        """Run the whole flow now (discovery from an unauthenticated request to the server);
        with ``device_prompt``, the device authorization grant where the server offers it."""
        raise NotImplementedError

    async def authorization(self) -> str | None:
        raise NotImplementedError

    async def challenged(self, challenge: AuthChallenge) -> bool:
        raise NotImplementedError

    def status(self) -> AuthStatus:
        tokens = self.store.load(self.name)
        if tokens is None or tokens.server_url != self.server_url:
            return AuthStatus(AuthState.NEEDS_LOGIN, "no tokens")
        return AuthStatus(AuthState.LOGGED_IN, None, tokens.expires_at)
