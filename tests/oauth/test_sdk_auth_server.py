"""The test authorization server is honest: driven by plain httpx, as the OAuth RFCs describe the
flow, it registers, authorizes with PKCE, issues tokens bound to the MCP server, refreshes, and
refuses what it should."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.oauth.oauth_harness import auth_server_running

REDIRECT = "http://127.0.0.1:9/callback"
AS_METADATA = "/.well-known/oauth-authorization-server"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
MCP_HEADERS = {"accept": "application/json, text/event-stream"}


async def test_plain_httpx_runs_the_whole_flow_against_it() -> None:
    async with auth_server_running(lifetime=600) as server, httpx.AsyncClient() as http:
        unauthorized = await http.post(server.url, json=INITIALIZE, headers=MCP_HEADERS)
        assert unauthorized.status_code == 401
        assert "resource_metadata=" in unauthorized.headers["www-authenticate"]
        prm = (await http.get(f"{server.issuer}/.well-known/oauth-protected-resource/mcp")).json()
        assert prm["resource"] == server.url
        assert prm["authorization_servers"] == [server.issuer]
        metadata = (await http.get(f"{server.issuer}{AS_METADATA}")).json()
        registered = (
            await http.post(
                metadata["registration_endpoint"],
                json={"redirect_uris": [REDIRECT], "client_name": "plain httpx"},
            )
        ).json()
        client_id, client_secret = registered["client_id"], registered["client_secret"]

        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        state = secrets.token_urlsafe(16)
        approved = await http.get(
            metadata["authorization_endpoint"],
            params={
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "state": state,
                "resource": server.url,
            },
        )
        assert approved.status_code in (302, 307)
        location = urlsplit(approved.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
        query = {key: values[0] for key, values in parse_qs(location.query).items()}
        assert query["state"] == state
        assert query["iss"] == server.issuer

        token_form = {
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "client_secret": client_secret,
            "resource": server.url,
        }
        wrong_verifier = await http.post(
            metadata["token_endpoint"], data={**token_form, "code_verifier": "x" * 50}
        )
        assert wrong_verifier.status_code == 400
        tokens = (
            await http.post(
                metadata["token_endpoint"], data={**token_form, "code_verifier": verifier}
            )
        ).json()
        assert tokens["expires_in"] == 600
        assert tokens["scope"] == "mcp"
        bearer = {**MCP_HEADERS, "authorization": f"Bearer {tokens['access_token']}"}
        assert (await http.post(server.url, json=INITIALIZE, headers=bearer)).status_code == 200

        refresh_form = {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client_id,
            "client_secret": client_secret,
        }
        refreshed = (await http.post(metadata["token_endpoint"], data=refresh_form)).json()
        assert refreshed["access_token"] != tokens["access_token"]
        # Rotated: the old refresh token is spent.
        reused = await http.post(metadata["token_endpoint"], data=refresh_form)
        assert reused.status_code == 400
        assert reused.json()["error"] == "invalid_grant"

        await server.expire_access()
        bearer = {**MCP_HEADERS, "authorization": f"Bearer {refreshed['access_token']}"}
        assert (await http.post(server.url, json=INITIALIZE, headers=bearer)).status_code == 401
        await server.revoke_refresh()
        revoked = await http.post(
            metadata["token_endpoint"],
            data={**refresh_form, "refresh_token": refreshed["refresh_token"]},
        )
        assert revoked.json()["error"] == "invalid_grant"

        await server.token_outage(True)
        down = await http.post(metadata["token_endpoint"], data=refresh_form)
        assert down.status_code == 503
        await server.token_outage(False)

        stats = await server.stats()
        assert stats["token_requests"] == 6
        assert stats["refresh_requests"] == 3  # the one during the outage was not read
        assert stats["registrations"] == 1
        assert {client_secret, tokens["access_token"], refreshed["refresh_token"]} <= set(
            stats["issued"]
        )


async def test_a_token_for_another_resource_is_refused() -> None:
    async with auth_server_running() as server, httpx.AsyncClient() as http:
        metadata = (await http.get(f"{server.issuer}{AS_METADATA}")).json()
        registered = (
            await http.post(metadata["registration_endpoint"], json={"redirect_uris": [REDIRECT]})
        ).json()
        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        approved = await http.get(
            metadata["authorization_endpoint"],
            params={
                "response_type": "code",
                "client_id": registered["client_id"],
                "redirect_uri": REDIRECT,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "state": "s",
                "resource": "http://127.0.0.1:1/elsewhere",
            },
        )
        code = parse_qs(urlsplit(approved.headers["location"]).query)["code"][0]
        tokens = (
            await http.post(
                metadata["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT,
                    "client_id": registered["client_id"],
                    "client_secret": registered["client_secret"],
                    "code_verifier": verifier,
                },
            )
        ).json()
        bearer = {**MCP_HEADERS, "authorization": f"Bearer {tokens['access_token']}"}
        assert (await http.post(server.url, json=INITIALIZE, headers=bearer)).status_code == 401
