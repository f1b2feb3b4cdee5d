"""Where an authorization server revokes tokens (RFC 7009): its metadata's
``revocation_endpoint``, held to the rules of every other endpoint."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from ._errors import OAuthError
from ._http import is_loopback, request_json, require_secure_url, shown
from ._tokens import Tokens


async def revocation_endpoint(http: httpx.AsyncClient, tokens: Tokens) -> str | None:
    """The revocation endpoint of ``tokens.issuer`` (RFC 8414, then OpenID discovery), None
    when it offers none. The tokens are sent there with the client's secret: it must be https
    (loopback, plain http too, only for a loopback MCP server), as the issuer must; the
    metadata is read bounded. OAuthError otherwise (never a token in it)."""
    local = is_loopback(tokens.server_url)
    issuer = require_secure_url(tokens.issuer, "the stored issuer", local=local)
    parts = urlsplit(issuer)
    base = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    candidates = [
        f"{base}/.well-known/oauth-authorization-server{path}",
        f"{base}/.well-known/openid-configuration{path}",
        f"{base}{path}/.well-known/openid-configuration",
    ]
    for url in candidates:
        answer = await request_json(http, "GET", url, what=f"the metadata at {url}")
        if answer.status != 200:
            continue
        metadata = answer.body
        if not isinstance(metadata, dict) or metadata.get("issuer") != issuer:
            raise OAuthError(f"the metadata at {url} is not {issuer}'s")
        endpoint = metadata.get("revocation_endpoint")
        if endpoint is None:
            return None
        return require_secure_url(
            endpoint, f"the revocation_endpoint {shown(endpoint)} of {issuer}", local=local
        )
    return None
