"""Attacks on and failure modes of one upstream's OAuth client, each against a real
authorization server on 127.0.0.1 (virtual time where it waits): a malicious MCP server naming
another authorization server, cancellation mid-refresh, short-lived tokens, a server refusing
every token, step-up for an unattended proxy, a hostile device authorization answer."""

from __future__ import annotations

from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing

from trio_sandbox.mcp import McpHttpStatusError, open_mcp_client
from trio_sandbox.oauth import (
    AuthState,
    LoginRequired,
    MemoryTokenStore,
    OAuthClient,
    OAuthError,
    OAuthSettings,
    Tokens,
)

from .auth_world import AuthWorld, HeadlessUserAgent, open_auth_world

EPOCH = 1_800_000_000.0


def now() -> float:
    return EPOCH + trio.current_time()


def oauth_client(
    world: AuthWorld,
    http: httpx.AsyncClient,
    store: MemoryTokenStore,
    *,
    attended: bool = False,
    settings: OAuthSettings | None = None,
) -> OAuthClient:
    return OAuthClient(
        "forge",
        world.mcp_url,
        settings or OAuthSettings(),
        store,
        http,
        HeadlessUserAgent(http) if attended else None,
        now=now,
    )


async def logged_in(world: AuthWorld, http: httpx.AsyncClient) -> tuple[MemoryTokenStore, Tokens]:
    """A store holding a person's login (as `trio-sandbox auth login` leaves it)."""
    store = MemoryTokenStore()
    tokens = await oauth_client(world, http, store, attended=True).login()
    return store, tokens


# --- finding 7: a configured client's secret goes to its own authorization server only ------


def test_a_client_secret_needs_the_issuer() -> None:
    with pytest.raises(ValueError, match='"issuer"'):
        OAuthSettings(client_id="svc", client_secret="s3cret")
    assert OAuthSettings(client_id="svc").issuer is None


@pytest.mark.parametrize("grant", ["client_credentials", "authorization_code"])
async def test_the_secret_never_reaches_another_authorization_server(
    world: AuthWorld, http: httpx.AsyncClient, grant: str
) -> None:
    async with open_auth_world() as attacker:
        world.registration = False
        world.clients["svc"] = "REAL-AS-SECRET"
        # The MCP server (malicious, or taken over) names the attacker's server.
        world.prm_servers = [attacker.issuer]
        settings = OAuthSettings(
            grant=grant,  # type: ignore[arg-type]
            client_id="svc",
            client_secret="REAL-AS-SECRET",
            issuer=world.issuer,
        )
        auth = oauth_client(world, http, MemoryTokenStore(), attended=True, settings=settings)
        with pytest.raises(OAuthError, match="not the configured issuer") as caught:
            await auth.login()
        assert "REAL-AS-SECRET" not in str(caught.value)
        assert attacker.token_forms == []
        assert attacker.authorizations == []
        assert attacker.requests["/token"] == 0
        assert attacker.requests["/device"] == 0


# --- finding 3: a caller cancelled mid-refresh does not lose a rotated refresh token --------


async def expired(world: AuthWorld, http: httpx.AsyncClient) -> OAuthClient:
    """An unattended client whose stored access token has expired (its refresh token good)."""
    store, tokens = await logged_in(world, http)
    store.save("forge", attrs.evolve(tokens, expires_at=now() - 1))
    return oauth_client(world, http, store)


async def test_a_cancelled_caller_keeps_the_rotated_refresh_token(
    world: AuthWorld, http: httpx.AsyncClient, mock_clock: trio.testing.MockClock
) -> None:
    auth = await expired(world, http)
    world.answer_gate = trio.Event()
    cancel_scope = trio.CancelScope()

    async def caller() -> None:
        with cancel_scope:
            await auth.authorization()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller)
        # The server has rotated the refresh token; its answer is on the way when the caller
        # is cancelled (its tools/call cancelled, a close() timing out).
        await world.refresh_processed.wait()
        cancel_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        world.answer_gate.set()
    stored = auth.store.load("forge")
    assert stored is not None
    assert stored.refresh_token in world.refresh_tokens  # the new one was kept
    assert auth.status().state is AuthState.LOGGED_IN
    value = await auth.authorization()
    assert value is not None
    assert value.removeprefix("Bearer ") in world.tokens
    assert world.grants["refresh_token"] == 1


# --- finding 5: short-lived tokens are renewed once, not by every caller ---------------------


async def test_short_lived_tokens_are_renewed_once_for_many_callers(
    world: AuthWorld, http: httpx.AsyncClient, mock_clock: trio.testing.MockClock
) -> None:
    world.expires_in = 30  # shorter than the usual minute of leeway
    store, _ = await logged_in(world, http)
    auth = oauth_client(world, http, store)
    answers: list[str | None] = []

    async def call() -> None:
        answers.append(await auth.authorization())

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(call)
    assert world.grants["refresh_token"] <= 1
    assert len(set(answers)) == 1
    for _ in range(5):
        await auth.authorization()
    assert world.grants["refresh_token"] <= 1
    # Renewed again when it is close to its end (half its lifetime), once.
    before = world.grants["refresh_token"]
    mock_clock.jump(20)
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(call)
    assert world.grants["refresh_token"] == before + 1


# --- finding 4: client credentials back off and fail once for many callers -------------------


async def test_failing_client_credentials_back_off_once_for_many_callers(
    world: AuthWorld, http: httpx.AsyncClient, mock_clock: trio.testing.MockClock
) -> None:
    world.clients["svc"] = "svc-secret"
    world.client_credentials_mode = "error503"
    settings = OAuthSettings(
        grant="client_credentials",
        client_id="svc",
        client_secret="svc-secret",
        issuer=world.issuer,
    )
    auth = oauth_client(world, http, MemoryTokenStore(), settings=settings)
    errors: list[str] = []

    async def call() -> None:
        try:
            await auth.authorization()
        except OAuthError as exc:
            errors.append(str(exc))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(call)
    assert len(errors) == 10
    assert world.grants["client_credentials"] == 1
    assert world.requests["/mcp"] == 1  # one discovery
    assert world.requests["/.well-known/oauth-authorization-server"] == 1
    status = auth.status()
    assert status.state is AuthState.REFRESH_FAILING
    assert status.reason is not None
    assert "HTTP 503" in status.reason
    assert status.next_retry_at == now() + 5
    for _ in range(5):
        with pytest.raises(OAuthError, match="next retry in 5 s"):
            await auth.authorization()
    assert world.grants["client_credentials"] == 1
    mock_clock.jump(5)
    world.client_credentials_mode = "ok"
    value = await auth.authorization()
    assert value is not None
    assert value.removeprefix("Bearer ") in world.tokens
    assert world.grants["client_credentials"] == 2
    assert auth.status().state is AuthState.LOGGED_IN


# --- finding 6: a server refusing every token costs one refresh, then a pause ---------------


async def test_a_server_refusing_every_token_gets_one_refresh_then_a_pause(
    world: AuthWorld, http: httpx.AsyncClient, mock_clock: trio.testing.MockClock
) -> None:
    store, _ = await logged_in(world, http)
    auth = oauth_client(world, http, store)
    async with open_mcp_client(world.mcp_url, auth=auth) as client:
        world.refuse_every_token = True
        for _ in range(3):
            with pytest.raises(McpHttpStatusError) as caught:
                await client.list_tools()
            assert caught.value.status == 401
        # The first request's 401 refreshed; the new token's 401 let the status stand.
        assert world.grants["refresh_token"] == 1
        status = auth.status()
        assert status.state is AuthState.REFRESH_FAILING
        assert status.reason is not None
        assert "refused" in status.reason
        assert status.next_retry_at == now() + 5
        # After the pause, one more refresh for the next request (and a longer pause).
        mock_clock.jump(5)
        with pytest.raises(McpHttpStatusError):
            await client.list_tools()
        assert world.grants["refresh_token"] == 2
        assert auth.status().next_retry_at == now() + 10
        # The server takes tokens again: the last one works, no refresh needed.
        world.refuse_every_token = False
        await client.list_tools()
        assert world.grants["refresh_token"] == 2


# --- findings 1 and 2: step-up for an unattended proxy ---------------------------------------


async def test_a_tool_needing_more_scope_leaves_refresh_working(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    offset = [0.0]

    def later() -> float:
        return EPOCH + offset[0]

    store = MemoryTokenStore()
    person = OAuthClient(
        "forge", world.mcp_url, OAuthSettings(), store, http, HeadlessUserAgent(http), now=later
    )
    await person.login()
    proxy = OAuthClient("forge", world.mcp_url, OAuthSettings(), store, http, None, now=later)
    world.call_scopes = ["admin"]
    async with open_mcp_client(world.mcp_url, auth=proxy) as client:
        with pytest.raises(LoginRequired, match="admin") as caught:
            await client.call_tool("whoami")
        assert "trio-sandbox auth login forge" in str(caught.value)
        assert proxy.status().state is AuthState.LOGGED_IN  # the tokens are still good
        offset[0] += 7200  # the access token expires; its refresh token is still good
        world.call_scopes = []
        await client.list_tools()
        assert world.grants["refresh_token"] == 1
        await client.call_tool("whoami")
    stored = store.load("forge")
    assert stored is not None
    assert stored.wanted_scope is not None  # kept through the refresh, for the next login
    assert "admin" in stored.wanted_scope.split()
    assert "admin" in (proxy.status().reason or "")


async def test_the_advised_login_asks_for_the_scope_a_tool_needed(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    world.prm_scopes = ["read"]
    store, tokens = await logged_in(world, http)
    assert tokens.scope == "read"
    proxy = oauth_client(world, http, store)
    world.call_scopes = ["read", "write"]
    async with open_mcp_client(world.mcp_url, auth=proxy) as client:
        with pytest.raises(LoginRequired, match="write"):
            await client.call_tool("whoami")
        stored = store.load("forge")
        assert stored is not None
        assert stored.wanted_scope is not None
        assert set(stored.wanted_scope.split()) == {"read", "write"}
        # `trio-sandbox auth login forge`: another process, a new client on the same store.
        fresh = await oauth_client(world, http, store, attended=True).login()
        assert set(world.authorizations[-1]["scope"].split()) == {"read", "write"}
        assert fresh.wanted_scope is None
        assert await client.call_tool("whoami") is not None


async def test_an_attended_step_up_keeps_the_scopes_already_granted(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    world.prm_scopes = ["read"]
    store, _ = await logged_in(world, http)
    # A restarted client: it asked for nothing itself yet, the store says what was granted.
    auth = oauth_client(world, http, store, attended=True)
    world.call_scopes = ["write"]
    async with open_mcp_client(world.mcp_url, auth=auth) as client:
        await client.call_tool("whoami")
    assert set(world.authorizations[-1]["scope"].split()) == {"read", "write"}


def test_stored_tokens_without_a_wanted_scope_still_load() -> None:
    tokens = Tokens(
        server_url="https://mcp.example.com/mcp",
        issuer="https://auth.example.com",
        token_endpoint="https://auth.example.com/token",
        client_id="c",
        client_secret=None,
        token_endpoint_auth_method="none",
        access_token="at",
        refresh_token="rt",
        expires_at=None,
        scope="read",
    )
    data = tokens.to_json()
    assert "wanted_scope" not in data  # files as before, unless a scope is wanted
    assert Tokens.from_json(data) == tokens
    wanting = attrs.evolve(tokens, wanted_scope="read write")
    assert Tokens.from_json(wanting.to_json()) == wanting
    with pytest.raises(ValueError, match="wanted_scope"):
        Tokens.from_json({**data, "wanted_scope": 3})


# --- finding 11a: a login written elsewhere during a refused refresh is not marked refused ---


async def test_a_login_elsewhere_during_a_refused_refresh_counts(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    auth = await expired(world, http)
    _, new_login = await logged_in(world, http)  # what `auth login` in another process gets
    world.refresh_mode = "invalid_grant"
    world.token_gate = trio.Event()
    world.token_requested = trio.Event()
    async with trio.open_nursery() as nursery:

        async def caller() -> None:
            with pytest.raises(LoginRequired, match="refused the refresh"):
                await auth.authorization()

        nursery.start_soon(caller)
        await world.token_requested.wait()
        auth.store.save("forge", new_login)  # written while the refresh is on its way
        world.token_gate.set()
    assert auth.status().state is AuthState.LOGGED_IN
    assert await auth.authorization() == f"Bearer {new_login.access_token}"


# --- finding 9: the device flow shows the person nothing unchecked ---------------------------


@pytest.mark.parametrize(
    "answer",
    [
        {"verification_uri": "javascript:alert(1)"},
        {"verification_uri": "https://evil.example/\x1b[8m"},
        {"verification_uri": "http://evil.example/activate"},
        {"user_code": "\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2K\rWDJB"},
        {"user_code": "W" * 65},
        {"user_code": "WDJB\nMJHT"},
        {"verification_uri_complete": "javascript:alert(1)"},
    ],
)
async def test_a_hostile_device_answer_is_never_shown(
    world: AuthWorld, http: httpx.AsyncClient, answer: dict[str, object]
) -> None:
    world.device = True
    world.device_answer = answer
    shown: list[tuple[str, str]] = []
    auth = oauth_client(world, http, MemoryTokenStore())
    with pytest.raises(OAuthError) as caught:
        await auth.login(device_prompt=lambda uri, code: shown.append((uri, code)))
    assert shown == []
    assert "\x1b" not in str(caught.value)
    assert world.grants["urn:ietf:params:oauth:grant-type:device_code"] == 0


async def test_the_device_poll_interval_is_at_least_a_second(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    world.device = True
    world.device_answer = {"interval": 0.001}
    auth = oauth_client(world, http, MemoryTokenStore())
    start = trio.current_time()
    await auth.login(device_prompt=lambda uri, code: None)
    assert world.grants["urn:ietf:params:oauth:grant-type:device_code"] == 2  # once pending
    assert trio.current_time() - start >= 2.0


# --- finding 11c: a server's strings in an error message are bounded ------------------------

HUGE = "x" * 500_000


@pytest.mark.parametrize(
    "knob",
    [
        {"prm_resource": "https://elsewhere.example/" + HUGE},
        {"prm_servers": ["https://auth.example/" + HUGE]},
        {"registration_answer": {"token_endpoint_auth_method": HUGE}},
    ],
)
async def test_a_server_s_huge_string_is_bounded_in_the_error(
    world: AuthWorld, http: httpx.AsyncClient, knob: dict[str, Any]
) -> None:
    for name, value in knob.items():
        setattr(world, name, value)
    with pytest.raises(OAuthError) as caught:
        await oauth_client(world, http, MemoryTokenStore(), attended=True).login()
    assert len(str(caught.value)) < 500


# --- finding 11d: a resource_metadata URL that 404s falls back to the well-known URIs -------


async def test_a_missing_advertised_resource_metadata_falls_back_to_the_well_known_uri(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    world.www_resource_metadata = f"{world.base}/nowhere"
    world.prm_scopes = ["read"]
    await oauth_client(world, http, MemoryTokenStore(), attended=True).login()
    assert world.requests["/nowhere"] == 1
    assert world.requests["/.well-known/oauth-protected-resource/mcp"] == 1
    assert world.authorizations[0].get("scope") == "read"  # from the metadata found there


async def test_a_huge_scope_demand_is_bounded_in_the_error_and_status(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    store, _ = await logged_in(world, http)
    proxy = oauth_client(world, http, store)
    world.call_scopes = [f"scope-{index}" for index in range(500)]
    async with open_mcp_client(world.mcp_url, auth=proxy) as client:
        with pytest.raises(LoginRequired, match="scope-0") as caught:
            await client.call_tool("whoami")
    assert len(str(caught.value)) < 300
    assert len(proxy.status().reason or "") < 300


@pytest.mark.parametrize("field", ["access_token", "refresh_token"])
async def test_a_token_too_short_to_redact_is_refused(field: str) -> None:
    """(Review finding 7.) A token shorter than redaction's minimum could not be kept out of
    output: the grant is an OAuthError, nothing is stored, nobody was told the value."""
    async with open_auth_world() as world, httpx.AsyncClient() as http:
        world.token_extra = {field: "a0"}
        store = MemoryTokenStore()
        told: list[str] = []
        client = OAuthClient(
            "up",
            world.mcp_url,
            OAuthSettings(),
            store,
            http,
            user_agent=HeadlessUserAgent(http),
            on_secret=told.append,
        )
        with pytest.raises(OAuthError, match=f"issued a {field.replace('_', ' ')} of 2 char"):
            await client.login()
        assert store.load("up") is None
        assert "a0" not in told
