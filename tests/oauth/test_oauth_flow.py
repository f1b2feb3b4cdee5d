"""The OAuth client against a real authorization server and the MCP server it protects, on
127.0.0.1: the whole flow through the MCP client's auth hook, and every check it makes."""

from __future__ import annotations

import re

import attrs
import httpx
import pytest

from trio_sandbox.mcp import McpHttpStatusError, open_mcp_client
from trio_sandbox.oauth import (
    AuthState,
    LoginRequired,
    MemoryTokenStore,
    OAuthClient,
    OAuthError,
    OAuthSettings,
)

from .auth_world import AuthWorld, HeadlessUserAgent


def make_client(
    world: AuthWorld,
    http: httpx.AsyncClient,
    *,
    attended: bool = True,
    settings: OAuthSettings | None = None,
    store: MemoryTokenStore | None = None,
    secrets: list[str] | None = None,
) -> OAuthClient:
    return OAuthClient(
        name="forge",
        server_url=world.mcp_url,
        settings=settings or OAuthSettings(),
        store=store or MemoryTokenStore(),
        http=http,
        user_agent=HeadlessUserAgent(http) if attended else None,
        on_secret=(secrets.append if secrets is not None else lambda value: None),
    )


async def test_a_tool_call_through_the_whole_flow(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    world.prm_scopes = ["mcp", "extra"]
    world.as_scopes = ["mcp", "extra", "offline_access"]
    secrets: list[str] = []
    store = MemoryTokenStore()
    auth = make_client(world, http, store=store, secrets=secrets)
    async with open_mcp_client(world.mcp_url, auth=auth) as client:
        result = await client.call_tool("whoami")
    assert result.content[0].text == "a protected answer"  # type: ignore[union-attr]
    # One registration, one authorization with PKCE S256, the resource and the chosen scopes
    # (the resource's scopes_supported, and offline_access since the server offers it).
    assert world.requests["/register"] == 1
    [request] = world.authorizations
    assert request["code_challenge_method"] == "S256"
    assert request["resource"] == world.mcp_url
    assert request["scope"] == "mcp extra offline_access"
    assert world.grants == {"authorization_code": 1}  # the server checked the verifier
    tokens = store.load("forge")
    assert tokens is not None
    assert tokens.server_url == world.mcp_url
    assert tokens.issuer == world.issuer
    assert tokens.access_token in secrets
    assert tokens.refresh_token in secrets
    assert "at-" not in repr(tokens)
    assert "rt-" not in repr(tokens)
    # Every MCP request after the login carried the token.
    assert world.mcp_authorizations[0] is None
    assert all(value == f"Bearer {tokens.access_token}" for value in world.mcp_authorizations[1:])
    assert auth.status().state is AuthState.LOGGED_IN


async def test_unattended_without_tokens_needs_a_login_by_name(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    auth = make_client(world, http, attended=False)
    with pytest.raises(LoginRequired) as caught:
        async with open_mcp_client(world.mcp_url, auth=auth):
            pass
    assert caught.value.upstream == "forge"
    assert "trio-sandbox auth login forge" in str(caught.value)
    assert world.authorizations == []
    status = auth.status()
    assert status.state is AuthState.NEEDS_LOGIN


async def test_stored_tokens_are_used_without_a_login(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    store = MemoryTokenStore()
    await make_client(world, http, store=store).login()
    assert world.requests["/authorize"] == 1
    # Another client (a restarted proxy) with the same store and no browser.
    auth = make_client(world, http, attended=False, store=store)
    async with open_mcp_client(world.mcp_url, auth=auth) as client:
        await client.call_tool("whoami")
    assert world.requests["/authorize"] == 1
    # Tokens stored for another URL are not used.
    tokens = store.load("forge")
    assert tokens is not None
    store.save("forge", attrs.evolve(tokens, server_url="http://127.0.0.1:1/mcp"))
    with pytest.raises(LoginRequired):
        async with open_mcp_client(world.mcp_url, auth=auth):
            pass


@pytest.mark.parametrize(
    ("knob", "value", "message"),
    [
        ("state_mode", "wrong", "state does not match"),
        ("iss_mode", "wrong", "another issuer"),
        ("iss_mode", "omit", "has no iss"),
    ],
)
async def test_a_forged_redirect_is_refused_before_the_token_request(
    world: AuthWorld, http: httpx.AsyncClient, knob: str, value: str, message: str
) -> None:
    setattr(world, knob, value)
    with pytest.raises(OAuthError, match=message) as caught:
        await make_client(world, http).login()
    assert world.requests["/authorize"] == 1
    assert world.grants == {}  # the code was never exchanged
    assert "code" not in str(caught.value).replace("the code", "")


async def test_iss_absent_and_not_advertised_is_accepted(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    world.iss_supported = False
    world.iss_mode = "omit"
    await make_client(world, http).login()
    assert world.grants == {"authorization_code": 1}


async def test_metadata_of_another_issuer_is_refused(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    world.metadata_issuer = "https://attacker.example"
    with pytest.raises(OAuthError, match="another issuer"):
        await make_client(world, http).login()
    assert world.requests["/register"] == 0
    assert world.authorizations == []


async def test_resource_metadata_for_another_server_is_refused(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    world.prm_resource = "https://evil.example/mcp"
    with pytest.raises(OAuthError, match="another resource"):
        await make_client(world, http).login()
    assert world.authorizations == []


async def test_a_huge_answer_is_bounded(world: AuthWorld, http: httpx.AsyncClient) -> None:
    world.huge_metadata = True
    with pytest.raises(OAuthError, match="larger than"):
        await make_client(world, http).login()


async def test_a_pre_registered_confidential_client(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    world.registration = False
    world.clients["pre"] = "pre-secret"
    settings = OAuthSettings(client_id="pre", client_secret="pre-secret", issuer=world.issuer)
    secrets: list[str] = []
    await make_client(world, http, settings=settings, secrets=secrets).login()
    assert world.authorizations[0]["client_id"] == "pre"
    assert "client_secret" not in world.token_forms[0]  # basic: in the header
    assert "pre-secret" in secrets
    assert "pre-secret" not in repr(settings)


async def test_client_credentials_need_no_person(world: AuthWorld, http: httpx.AsyncClient) -> None:
    world.clients["robot"] = "robot-secret"
    settings = OAuthSettings(
        grant="client_credentials",
        client_id="robot",
        client_secret="robot-secret",
        scopes=("mcp",),
        issuer=world.issuer,
    )
    auth = make_client(world, http, attended=False, settings=settings)
    async with open_mcp_client(world.mcp_url, auth=auth) as client:
        await client.call_tool("whoami")
    assert world.grants == {"client_credentials": 1}
    assert world.token_forms[0]["scope"] == "mcp"
    assert world.token_forms[0]["resource"] == world.mcp_url
    assert world.authorizations == []


async def test_device_authorization_grant(world: AuthWorld, http: httpx.AsyncClient) -> None:
    world.device = True
    prompts: list[tuple[str, str]] = []
    auth = make_client(world, http, attended=False)
    tokens = await auth.login(device_prompt=lambda uri, code: prompts.append((uri, code)))
    assert prompts == [(f"{world.base}/activate", "WDJB-MJHT")]
    assert world.grants == {"urn:ietf:params:oauth:grant-type:device_code": 2}  # once pending
    assert tokens.access_token in world.tokens
    assert world.authorizations == []


async def test_step_up_asks_for_the_union_and_is_bounded(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    world.www_scope = "mcp:read"
    world.call_scopes = ["mcp:write"]
    auth = make_client(world, http)
    async with open_mcp_client(world.mcp_url, auth=auth) as client:
        await client.list_tools()
        assert [a.get("scope") for a in world.authorizations] == ["mcp:read"]
        await client.call_tool("whoami")
        assert [a.get("scope") for a in world.authorizations] == ["mcp:read", "mcp:read mcp:write"]
        # A server that asks for a scope it never grants: bounded, then its 403 stands.
        world.call_scopes = ["mcp:admin"]
        world.withheld_scopes = {"mcp:admin"}
        with pytest.raises(McpHttpStatusError) as caught:
            await client.call_tool("whoami")
        assert caught.value.status == 403
    assert len(world.authorizations) == 3  # one step-up for mcp:admin, not a loop


async def test_a_pre_registered_client_is_not_taken_to_another_server(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    world.registration = False
    world.clients["pre"] = None
    store = MemoryTokenStore()
    settings = OAuthSettings(client_id="pre")
    tokens = await make_client(world, http, settings=settings, store=store).login()
    # The resource now names another authorization server (its tokens say the old one).
    store.save("forge", attrs.evolve(tokens, issuer="https://old-as.example"))
    with pytest.raises(OAuthError, match=re.escape("changed from https://old-as.example")):
        await make_client(world, http, settings=settings, store=store).login()
    assert len(world.authorizations) == 1


async def test_a_changed_authorization_server_means_a_new_registration(
    world: AuthWorld, http: httpx.AsyncClient
) -> None:
    store = MemoryTokenStore()
    tokens = await make_client(world, http, store=store).login()
    # Tokens from another authorization server (a moved resource): never refreshed there,
    # a new registration here, and the old client_id never shown to this server.
    store.save(
        "forge", attrs.evolve(tokens, issuer="https://old-as.example", client_id="old-client")
    )
    world.tokens.clear()  # the resource no longer accepts the old access token
    auth = make_client(world, http, store=store)
    async with open_mcp_client(world.mcp_url, auth=auth) as client:
        await client.call_tool("whoami")
    assert world.grants["refresh_token"] == 0
    assert world.requests["/register"] == 2
    assert all(form.get("client_id") != "old-client" for form in world.token_forms)
    assert all(query["client_id"] != "old-client" for query in world.authorizations)
