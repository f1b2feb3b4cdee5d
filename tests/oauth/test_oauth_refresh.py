"""Refreshing: one refresh for many waiting callers, backoff after a failure (virtual time),
a refused refresh token means a login by name, and no token in any error."""

from __future__ import annotations

import attrs
import httpx
import pytest
import trio
import trio.testing

from trio_sandbox.oauth import (
    AuthState,
    LoginRequired,
    MemoryTokenStore,
    OAuthClient,
    OAuthError,
    OAuthSettings,
)

from .auth_world import AuthWorld, HeadlessUserAgent

EPOCH = 1_800_000_000.0


async def expired_client(world: AuthWorld, http: httpx.AsyncClient) -> OAuthClient:
    """An unattended client whose stored access token has expired (its refresh token is good)."""
    store = MemoryTokenStore()

    def now() -> float:
        return EPOCH + trio.current_time()

    person = OAuthClient(
        "forge", world.mcp_url, OAuthSettings(), store, http, HeadlessUserAgent(http), now=now
    )
    tokens = await person.login()
    store.save("forge", attrs.evolve(tokens, expires_at=now() - 1))
    return OAuthClient("forge", world.mcp_url, OAuthSettings(), store, http, None, now=now)


async def test_concurrent_callers_wait_for_one_refresh(
    world: AuthWorld, http: httpx.AsyncClient, mock_clock: trio.testing.MockClock
) -> None:
    auth = await expired_client(world, http)
    assert auth.status().state is AuthState.EXPIRED
    world.token_gate = trio.Event()
    world.token_requested = trio.Event()
    answers: list[str | None] = []

    async def call() -> None:
        answers.append(await auth.authorization())

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(call)
        await world.token_requested.wait()
        await trio.testing.wait_all_tasks_blocked()
        world.token_gate.set()
    assert world.grants["refresh_token"] == 1  # counted by the server
    assert len(answers) == 20
    assert len(set(answers)) == 1
    [answer] = set(answers)
    assert answer is not None
    assert answer.removeprefix("Bearer ") in world.tokens
    assert auth.status().state is AuthState.LOGGED_IN


async def test_a_failing_refresh_backs_off_and_says_so(
    world: AuthWorld, http: httpx.AsyncClient, mock_clock: trio.testing.MockClock
) -> None:
    auth = await expired_client(world, http)
    world.refresh_mode = "error500"
    with pytest.raises(OAuthError, match="HTTP 500"):
        await auth.authorization()
    assert world.grants["refresh_token"] == 1
    status = auth.status()
    assert status.state is AuthState.REFRESH_FAILING
    assert status.reason is not None
    assert "HTTP 500" in status.reason
    assert status.next_retry_at == EPOCH + trio.current_time() + 5
    # Within the backoff: no request, the same story.
    for _ in range(5):
        with pytest.raises(OAuthError, match="next retry in 5 s"):
            await auth.authorization()
    assert world.grants["refresh_token"] == 1
    # After it: one more try, which fails again and doubles the wait.
    mock_clock.jump(5)
    with pytest.raises(OAuthError, match="HTTP 500"):
        await auth.authorization()
    assert world.grants["refresh_token"] == 2
    assert auth.status().next_retry_at == EPOCH + trio.current_time() + 10
    # The server recovers: the next try after the backoff succeeds and clears the failure.
    world.refresh_mode = "ok"
    mock_clock.jump(10)
    assert await auth.authorization() is not None
    assert world.grants["refresh_token"] == 3
    status = auth.status()
    assert status.state is AuthState.LOGGED_IN
    assert status.next_retry_at is None


async def test_a_refused_refresh_token_needs_a_login_by_name(
    world: AuthWorld, http: httpx.AsyncClient, mock_clock: trio.testing.MockClock
) -> None:
    auth = await expired_client(world, http)
    world.refresh_mode = "invalid_grant"
    with pytest.raises(LoginRequired) as caught:
        await auth.authorization()
    assert caught.value.upstream == "forge"
    assert "invalid_grant" in caught.value.reason
    assert "trio-sandbox auth login forge" in str(caught.value)
    status = auth.status()
    assert status.state is AuthState.NEEDS_LOGIN
    assert status.reason is not None
    assert "invalid_grant" in status.reason
    # The same refresh token is not sent again: the same answer would come.
    with pytest.raises(LoginRequired):
        await auth.authorization()
    assert world.grants["refresh_token"] == 1
    # A login elsewhere (the CLI, another process) writes the store: the client takes it up.
    person = OAuthClient(
        "forge",
        world.mcp_url,
        OAuthSettings(),
        auth.store,
        http,
        HeadlessUserAgent(http),
        now=auth.now,
    )
    fresh = await person.login()
    assert auth.status().state is AuthState.LOGGED_IN
    assert await auth.authorization() == f"Bearer {fresh.access_token}"


async def test_no_secret_in_an_error_even_when_the_server_echoes_it(
    world: AuthWorld, http: httpx.AsyncClient, mock_clock: trio.testing.MockClock
) -> None:
    world.as_scopes = None
    auth = await expired_client(world, http)
    tokens = auth.store.load("forge")
    assert tokens is not None
    assert tokens.refresh_token is not None
    world.refresh_mode = "echo_secret"
    with pytest.raises(OAuthError) as caught:
        await auth.authorization()
    message = str(caught.value)
    assert "temporarily_unavailable" in message
    assert tokens.refresh_token not in message
    assert "[redacted]" in message
    status = auth.status()
    assert status.reason is not None
    assert tokens.refresh_token not in status.reason
    assert tokens.access_token not in repr(status)


async def test_an_authorization_server_that_never_answers_is_bounded(
    world: AuthWorld, http: httpx.AsyncClient, mock_clock: trio.testing.MockClock
) -> None:
    auth = await expired_client(world, http)
    world.token_gate = trio.Event()  # never set: the token endpoint hangs
    world.token_requested = trio.Event()
    failures: list[Exception] = []

    async def call() -> None:
        try:
            await auth.authorization()
        except OAuthError as exc:
            failures.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        await world.token_requested.wait()
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(29)
        await trio.testing.wait_all_tasks_blocked()
        assert failures == []
        mock_clock.jump(2)
    [failure] = failures
    assert "no answer within 30 s" in str(failure)
    assert auth.status().state is AuthState.REFRESH_FAILING
    world.token_gate.set()
