"""What comes from servers, parsed: the WWW-Authenticate header, protected resource and
authorization server metadata, token responses, stored tokens. Garbage in means a clear
OAuthError (ValueError for the store), never a crash, never a secret in the message."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from hypothesis import given
from hypothesis import strategies as st

from trio_sandbox.oauth import OAuthError, Tokens

# Private modules of the package under test: the parsers have no public face of their own.
from trio_sandbox.oauth._grants import Client, client_secrets, describe_refusal, parse_grant
from trio_sandbox.oauth._http import is_loopback, require_secure_url
from trio_sandbox.oauth._metadata import (
    canonical_resource,
    fetch_resource_metadata,
    parse_resource_metadata,
    parse_server_metadata,
    resource_covers,
    resource_metadata_urls,
    server_metadata_urls,
)
from trio_sandbox.oauth._www_authenticate import parse_www_authenticate

SERVER = "https://mcp.example.com/mcp"
ISSUER = "https://auth.example.com"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
SECRET = "sEcReT-value-0123456789"
T = TypeVar("T")


def attempt(call: Callable[[], T], error: type[Exception] = OAuthError) -> T | Exception:
    """The call's value, or the ``error`` it raised (any other exception propagates)."""
    try:
        return call()
    except error as exc:
        return exc


def with_fields(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the fields a parser looks at, each of any JSON value (or the secret)."""
    return st.fixed_dictionaries(
        {},
        optional={name: st.one_of(json_values, st.just(SECRET)) for name in names},
    )


# --- WWW-Authenticate ---------------------------------------------------------------------


@given(st.text(max_size=300))
def test_www_authenticate_never_raises(header: str) -> None:
    challenge = parse_www_authenticate(header)
    for value in (challenge.error, challenge.scope, challenge.resource_metadata):
        assert value is None or isinstance(value, str)


param_names = st.sampled_from(["error", "scope", "resource_metadata", "realm", "error_description"])
param_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=40
)


@given(st.dictionaries(param_names, param_values, min_size=1), st.booleans())
def test_www_authenticate_quoted_values_round_trip(params: dict[str, str], basic: bool) -> None:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    header = "Bearer " + ", ".join(f"{name}={quoted(value)}" for name, value in params.items())
    if basic:
        header = 'Basic realm="x", ' + header
    challenge = parse_www_authenticate(header)
    assert challenge.error == params.get("error")
    assert challenge.scope == params.get("scope")
    assert challenge.resource_metadata == params.get("resource_metadata")


def test_www_authenticate_examples() -> None:
    header = (
        'Bearer error="insufficient_scope", scope="files:read files:write",'
        ' resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource"'
    )
    challenge = parse_www_authenticate(header)
    assert challenge.error == "insufficient_scope"
    assert challenge.scopes == ("files:read", "files:write")
    assert challenge.resource_metadata is not None
    assert parse_www_authenticate("Bearer error=invalid_token").error == "invalid_token"
    assert parse_www_authenticate('Basic realm="x"').resource_metadata is None
    assert parse_www_authenticate('Bearer scope="unterminated').scope is None
    assert parse_www_authenticate(None).error is None
    assert parse_www_authenticate("Bearer " + "a=b, " * 10000).error is None  # bounded


# --- metadata -------------------------------------------------------------------------------


@given(with_fields(["resource", "authorization_servers", "scopes_supported"]))
def test_resource_metadata_garbage_is_a_clear_error(data: dict[str, Any]) -> None:
    metadata = attempt(lambda: parse_resource_metadata(data, SERVER, "here"))
    if isinstance(metadata, Exception):
        assert "protected resource metadata at here" in str(metadata)
        assert SECRET not in str(metadata) or data.get("resource") == SECRET
        return
    assert resource_covers(metadata.resource, SERVER)
    assert metadata.authorization_servers


@given(
    with_fields(
        [
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "registration_endpoint",
            "scopes_supported",
            "code_challenge_methods_supported",
            "authorization_response_iss_parameter_supported",
        ]
    )
)
def test_server_metadata_garbage_is_a_clear_error(data: dict[str, Any]) -> None:
    metadata = attempt(lambda: parse_server_metadata(data, ISSUER, "there"))
    if isinstance(metadata, Exception):
        assert "authorization server metadata at there" in str(metadata)
        assert SECRET not in str(metadata)
        return
    assert metadata.issuer == ISSUER
    assert metadata.token_endpoint.startswith("https://")


def test_server_metadata_checks() -> None:
    good = {"issuer": ISSUER, "token_endpoint": f"{ISSUER}/token"}
    assert parse_server_metadata(good, ISSUER, "x").token_endpoint == f"{ISSUER}/token"
    for issuer in (f"{ISSUER}/", "HTTPS://auth.example.com", "https://attacker.example"):
        with pytest.raises(OAuthError, match="another issuer"):
            parse_server_metadata({**good, "issuer": issuer}, ISSUER, "x")
    with pytest.raises(OAuthError, match="must be an https URL"):
        parse_server_metadata({**good, "token_endpoint": "http://auth.example.com/t"}, ISSUER, "x")
    loopback = {"issuer": "http://127.0.0.1:8080", "token_endpoint": "http://127.0.0.1:8080/t"}
    assert parse_server_metadata(loopback, "http://127.0.0.1:8080", "x", local=True)
    # A remote server's documents may not send us into this machine, even over https.
    with pytest.raises(OAuthError, match="points to this machine"):
        parse_server_metadata(loopback, "http://127.0.0.1:8080", "x")
    inward = {**good, "token_endpoint": "https://localhost/t"}
    with pytest.raises(OAuthError, match="points to this machine"):
        parse_server_metadata(inward, ISSUER, "x")


async def test_a_remote_server_cannot_send_discovery_into_this_machine() -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(OAuthError, match="points to this machine"):
            await fetch_resource_metadata(
                http, SERVER, "http://127.0.0.1:1/.well-known/oauth-protected-resource", local=False
            )
        with pytest.raises(OAuthError, match="must be an https URL"):
            await fetch_resource_metadata(http, SERVER, "http://mcp.example.com/prm", local=False)


def test_resource_coverage() -> None:
    assert resource_covers("https://mcp.example.com/mcp", SERVER)
    assert resource_covers("https://MCP.example.com", SERVER)  # metadata at the root
    assert resource_covers("https://mcp.example.com/mcp/", SERVER)
    assert not resource_covers("https://mcp.example.com/other", SERVER)
    assert not resource_covers("https://mcp.example.com/mc", SERVER)
    assert not resource_covers("https://evil.example.com/mcp", SERVER)
    assert not resource_covers("http://mcp.example.com/mcp", SERVER)
    assert not resource_covers("https://mcp.example.com:8443/mcp", SERVER)
    assert canonical_resource("HTTPS://Mcp.Example.com/mcp/#frag") == SERVER


def test_discovery_orders() -> None:
    assert resource_metadata_urls("https://h.example/public/mcp") == [
        "https://h.example/.well-known/oauth-protected-resource/public/mcp",
        "https://h.example/.well-known/oauth-protected-resource",
    ]
    assert server_metadata_urls("https://a.example/tenant1") == [
        "https://a.example/.well-known/oauth-authorization-server/tenant1",
        "https://a.example/.well-known/openid-configuration/tenant1",
        "https://a.example/tenant1/.well-known/openid-configuration",
    ]
    assert server_metadata_urls("https://a.example") == [
        "https://a.example/.well-known/oauth-authorization-server",
        "https://a.example/.well-known/openid-configuration",
    ]


# --- token responses --------------------------------------------------------------------------


@given(
    with_fields(["access_token", "token_type", "refresh_token", "expires_in", "scope"]),
)
def test_token_response_garbage_is_a_clear_error(data: dict[str, Any]) -> None:
    grant = attempt(lambda: parse_grant(data, "the token request"))
    if isinstance(grant, Exception):
        assert str(grant).startswith("the token request: ")
        assert SECRET not in str(grant)
        return
    assert grant.access_token
    assert SECRET not in repr(grant)


@given(json_values)
def test_token_response_of_any_shape(data: object) -> None:
    attempt(lambda: parse_grant(data, "t"))


def test_a_token_with_a_line_break_is_refused() -> None:
    with pytest.raises(OAuthError, match="characters a header cannot carry"):
        parse_grant({"access_token": "a\r\nX-Evil: 1", "token_type": "Bearer"}, "t")


_NQCHAR = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\')


@given(st.lists(st.text(_NQCHAR, min_size=1, max_size=20), min_size=1, max_size=8))
def test_a_scope_of_rfc_6749_words_is_kept(words: list[str]) -> None:
    scope = " ".join(words)
    grant = parse_grant(
        {"access_token": "an-access-token", "token_type": "Bearer", "scope": scope}, "t"
    )
    assert grant.scope == scope


@given(
    st.text(max_size=40).filter(
        lambda text: re.fullmatch(r"[!#-\[\]-~]+( [!#-\[\]-~]+)*", text) is None
    )
)
def test_a_scope_that_is_not_rfc_6749_words_is_refused(scope: str) -> None:
    """(Review finding 6.) Controls, escapes, quotes, backslashes, doubled or edge spaces."""
    with pytest.raises(OAuthError, match="scope is not space-separated scope tokens"):
        parse_grant(
            {"access_token": "an-access-token", "token_type": "Bearer", "scope": scope}, "t"
        )


# --- PKCE -------------------------------------------------------------------------------------


def test_pkce_s256_matches_rfc7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert create_s256_code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_the_client_verifier_is_long_and_unreserved() -> None:
    from authlib.common.security import generate_token

    verifier = generate_token(64)
    assert re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", verifier)


# --- stored tokens ------------------------------------------------------------------------


def tokens() -> Tokens:
    return Tokens(
        server_url=SERVER,
        issuer=ISSUER,
        token_endpoint=f"{ISSUER}/token",
        client_id="client",
        client_secret=SECRET,
        token_endpoint_auth_method="client_secret_basic",
        access_token="access-" + SECRET,
        refresh_token="refresh-" + SECRET,
        expires_at=1.5,
        scope="mcp",
    )


def test_tokens_round_trip_through_json() -> None:
    stored = tokens()
    assert Tokens.from_json(json.loads(json.dumps(stored.to_json()))) == stored
    assert SECRET not in repr(stored)


@given(
    st.dictionaries(
        st.sampled_from(list(tokens().to_json())), st.one_of(json_values, st.just(SECRET))
    )
)
def test_stored_tokens_garbage_is_a_clear_value_error(changes: dict[str, Any]) -> None:
    data = {**tokens().to_json(), **changes}
    loaded = attempt(lambda: Tokens.from_json(data), ValueError)
    if isinstance(loaded, Exception):
        assert str(loaded).startswith("stored tokens: ")
        assert SECRET not in str(loaded)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x",
        "https://127.1.2.3/x",
        "https://0.0.0.0:8443/x",
        "https://localhost./x",
        "https://LOCALHOST/x",
        "https://a.localhost/x",
        "https://[::1]/x",
        "https://[::]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://[::ffff:0.0.0.0]/x",
        "https://2130706433/x",
        "https://0177.0.0.1/x",
        "https://0x7f.0.0.1/x",
        "https://127.1/x",
        "https://example.0x7f/x",
    ],
)
def test_every_spelling_of_this_machine_is_refused_for_a_remote_server(url: str) -> None:
    with pytest.raises(OAuthError, match=r"this machine|other than dotted decimal"):
        require_secure_url(url, "the endpoint", local=False)


@pytest.mark.parametrize(
    "url", ["https://auth.example.com/x", "https://1.2.3.4/x", "https://[2001:db8::1]/x"]
)
def test_remote_hosts_are_fine_for_a_remote_server(url: str) -> None:
    assert require_secure_url(url, "the endpoint", local=False) == url
    assert not is_loopback(url)


REFRESH = "rt-SECRETREFRESHTOKENVALUE/abc+def=="


@pytest.mark.parametrize("padding", [0, 170, 185, 199, 200])
def test_a_secret_straddling_the_cut_leaves_no_prefix(padding: int) -> None:
    body = {"error": "temporarily_unavailable", "error_description": "x" * padding + REFRESH}
    _, text = describe_refusal(body, [REFRESH])
    assert "SECRETREFRESH"[:8] not in text
    assert len(text) < 260


def test_every_spelling_of_an_echoed_secret_is_scrubbed() -> None:
    client = Client("svc", "s3cret/value+with=odd&chars", "client_secret_basic")
    basic = base64.b64encode(b"svc:s3cret/value+with=odd&chars").decode()
    secret = client.client_secret
    assert secret is not None
    echoes = [
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1].replace("/", "\\/"),
        f"Basic {basic}",
        REFRESH.replace("/", "\\/"),
        quote(REFRESH, safe=""),
    ]
    for echo in echoes:
        body = {"error": "invalid_request", "error_description": f"you sent {echo}"}
        _, text = describe_refusal(body, [*client_secrets(client), REFRESH])
        assert "s3cret" not in text
        assert basic[:12] not in text
        assert "SECRETREFRESH" not in text
        assert "[redacted]" in text
