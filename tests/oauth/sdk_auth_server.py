"""A real OAuth authorization server and MCP resource server, built with the official SDK.

``python -m tests.oauth.sdk_auth_server [--port N] [--lifetime SECONDS] [--state FILE]``, from the
checkout: prints the MCP URL (``http://127.0.0.1:PORT/mcp``) once it listens, then serves until
stopped. The SDK does the OAuth side (metadata, dynamic client registration, PKCE, the token and
revocation endpoints, the bearer check with RFC 8707 resource binding); this module supplies only
an in-memory provider whose authorization step approves at once (the browser is redirected
straight back with a code), and a few test controls under ``/test/`` (no authorization):

- ``GET /test/stats``: how many token requests (all, and refreshes) and registrations it served,
  and every access token, refresh token and client secret it ever issued (for the tests that
  grep outputs for them);
- ``POST /test/revoke-refresh``: forget every refresh token (a user revoking the grant);
- ``POST /test/token-outage?down=1|0``: the token endpoint answers 503 while down (an
  authorization server that is unreachable, without stopping the MCP server beside it);
- ``POST /test/expire-access``: every access token issued so far stops being accepted (as if its
  lifetime had run out; clients still believe their expiry).

``--client-auth asked`` keeps the client authentication method a client registers with (the
default assigns client_secret_post, see ``main``). ``--state FILE`` keeps clients and tokens in
FILE (JSON) so that a restarted server still knows them; ``--lifetime`` is the access tokens'
lifetime in seconds.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import time
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    IdentityAssertionParams,
    RefreshToken,
    TokenError,
    construct_redirect_uri,
)
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SCOPES = ["mcp", "extra"]


class MemoryProvider:
    """The SDK's ``OAuthAuthorizationServerProvider``, in memory (optionally kept in a file)."""

    def __init__(
        self, issuer: str, lifetime: int, state: Path | None, client_auth: str | None = None
    ) -> None:
        self.issuer = issuer
        self.client_auth = client_auth
        self.lifetime = lifetime
        self.state = state
        self.clients: dict[str, OAuthClientInformationFull] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.issued: list[str] = []  # every token and client secret, for the tests' greps
        self.token_requests = 0
        self.refresh_requests = 0
        self.registrations = 0
        self.token_down = False
        self._load()

    def _load(self) -> None:
        if self.state is None or not self.state.exists():
            return
        data = json.loads(self.state.read_text())
        self.clients = {
            k: OAuthClientInformationFull.model_validate(v) for k, v in data["clients"].items()
        }
        self.access = {k: AccessToken.model_validate(v) for k, v in data["access"].items()}
        self.refresh = {k: RefreshToken.model_validate(v) for k, v in data["refresh"].items()}
        self.issued = list(data["issued"])

    def save(self) -> None:
        if self.state is None:
            return
        data = {
            "clients": {k: v.model_dump(mode="json") for k, v in self.clients.items()},
            "access": {k: v.model_dump(mode="json") for k, v in self.access.items()},
            "refresh": {k: v.model_dump(mode="json") for k, v in self.refresh.items()},
            "issued": self.issued,
        }
        self.state.write_text(json.dumps(data))

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        self.registrations += 1
        if self.client_auth is not None and client_info.client_secret is not None:
            # RFC 7591 §3.2.1: the server may assign another method than the one asked for.
            client_info.token_endpoint_auth_method = self.client_auth
        if client_info.client_secret is not None:
            self.issued.append(client_info.client_secret)
        self.clients[client_info.client_id] = client_info
        self.save()

    async def authorize(
        self, client: OAuthClientInformationFull, params: AuthorizationParams
    ) -> str:
        # A person who approves at once: straight back to the client with a code.
        code = AuthorizationCode(
            code=secrets.token_urlsafe(24),
            scopes=params.scopes or ["mcp"],
            expires_at=time.time() + 300,
            client_id=client.client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
            subject="test-user",
        )
        self.codes[code.code] = code
        return construct_redirect_uri(
            str(params.redirect_uri), code=code.code, state=params.state, iss=self.issuer
        )

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        code = self.codes.get(authorization_code)
        return code if code is not None and code.client_id == client.client_id else None

    def _tokens(
        self, client_id: str, scopes: list[str], resource: str | None, subject: str | None
    ) -> OAuthToken:
        access = AccessToken(
            token=f"at-{secrets.token_urlsafe(24)}",
            client_id=client_id,
            scopes=scopes,
            expires_at=int(time.time()) + self.lifetime,
            resource=resource,
            subject=subject,
        )
        refresh = RefreshToken(
            token=f"rt-{secrets.token_urlsafe(24)}",
            client_id=client_id,
            scopes=scopes,
            resource=resource,
            subject=subject,
        )
        self.access[access.token] = access
        self.refresh[refresh.token] = refresh
        self.issued += [access.token, refresh.token]
        self.save()
        return OAuthToken(
            access_token=access.token,
            expires_in=self.lifetime,
            scope=" ".join(scopes),
            refresh_token=refresh.token,
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        del self.codes[authorization_code.code]  # one use only
        return self._tokens(
            client.client_id,
            authorization_code.scopes,
            authorization_code.resource,
            authorization_code.subject,
        )

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> RefreshToken | None:
        token = self.refresh.get(refresh_token)
        return token if token is not None and token.client_id == client.client_id else None

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        self.refresh.pop(refresh_token.token, None)  # rotated
        return self._tokens(client.client_id, scopes, refresh_token.resource, refresh_token.subject)

    async def load_access_token(self, token: str) -> AccessToken | None:
        access = self.access.get(token)
        if access is None or (access.expires_at is not None and access.expires_at < time.time()):
            return None
        return access

    async def exchange_identity_assertion(
        self, client: OAuthClientInformationFull, params: IdentityAssertionParams
    ) -> OAuthToken:
        raise TokenError("unsupported_grant_type", "no identity assertions here")

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        self.access.pop(token.token, None)
        self.refresh.pop(token.token, None)
        self.save()


def build(
    issuer: str, lifetime: int, state: Path | None, client_auth: str | None = None
) -> tuple[MCPServer[Any], MemoryProvider]:
    provider = MemoryProvider(issuer, lifetime, state, client_auth)
    sdk = MCPServer(
        "sdk-oauth",
        version="1.0",
        log_level="WARNING",
        auth_server_provider=provider,
        auth=AuthSettings(
            issuer_url=issuer,  # type: ignore[arg-type]  # pydantic parses the string
            resource_server_url=f"{issuer}/mcp",  # type: ignore[arg-type]
            validate_token_resource=True,
            required_scopes=["mcp"],
            client_registration_options=ClientRegistrationOptions(
                enabled=True, valid_scopes=SCOPES, default_scopes=["mcp"]
            ),
            revocation_options=RevocationOptions(enabled=True),
        ),
    )

    @sdk.tool(description="Echo the text back.")
    def echo(text: str) -> str:
        return f"oauth-echo:{text}"

    @sdk.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    return sdk, provider


def controls(provider: MemoryProvider) -> Starlette:
    """The ``/test/`` endpoints."""

    async def stats(request: Request) -> Response:
        return JSONResponse(
            {
                "token_requests": provider.token_requests,
                "refresh_requests": provider.refresh_requests,
                "registrations": provider.registrations,
                "issued": provider.issued,
            }
        )

    async def revoke_refresh(request: Request) -> Response:
        provider.refresh.clear()
        provider.save()
        return JSONResponse({})

    async def expire_access(request: Request) -> Response:
        provider.access.clear()
        provider.save()
        return JSONResponse({})

    async def token_outage(request: Request) -> Response:
        provider.token_down = request.query_params.get("down") == "1"
        return JSONResponse({"down": provider.token_down})

    return Starlette(
        routes=[
            Route("/test/stats", stats, methods=["GET"]),
            Route("/test/revoke-refresh", revoke_refresh, methods=["POST"]),
            Route("/test/expire-access", expire_access, methods=["POST"]),
            Route("/test/token-outage", token_outage, methods=["POST"]),
        ]
    )


def counting(app: Any, provider: MemoryProvider) -> Any:
    """The token endpoint counted (and, during an outage, answering 503) in front of the SDK,
    and the test controls beside it."""
    control = controls(provider)

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/test/"):
            await control(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"] == "/token":
            provider.token_requests += 1
            if provider.token_down:
                response = JSONResponse({"error": "temporarily_unavailable"}, status_code=503)
                await response(scope, receive, send)
                return
            body = b""
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            if b"grant_type=refresh_token" in body:
                provider.refresh_requests += 1
            replayed = False

            async def replay() -> Any:
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            await app(scope, replay, send)
            return
        await app(scope, receive, send)

    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=int, default=3600)
    parser.add_argument("--state", type=Path)
    # The SDK's token endpoint wants client_id in the form even with client_secret_basic (RFC
    # 6749 lets a client leave it out there): "post" registers clients for client_secret_post.
    parser.add_argument("--client-auth", choices=["post", "asked"], default="post")
    args = parser.parse_args()
    # Bound here, before the issuer URL is made from it: an ephemeral port without a race.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(128)
    issuer = f"http://127.0.0.1:{listener.getsockname()[1]}"
    client_auth = "client_secret_post" if args.client_auth == "post" else None
    sdk, provider = build(issuer, args.lifetime, args.state, client_auth)
    app = counting(sdk.streamable_http_app(), provider)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    print(f"{issuer}/mcp", flush=True)
    anyio.run(lambda: server.serve(sockets=[listener]))


if __name__ == "__main__":
    main()
