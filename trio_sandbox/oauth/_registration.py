"""Becoming a client of an authorization server, in the spec's order: pre-registered (the
settings), a client ID metadata document where the server supports one, else dynamic client
registration (RFC 7591). Hand-written: authlib has the server side of RFC 7591 only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

import httpx

from ._errors import OAuthError
from ._grants import AUTH_METHODS, Client, describe_refusal
from ._http import request_json, shown
from ._metadata import ServerMetadata
from ._settings import OAuthSettings

CLIENT_NAME: Final = "trio-sandbox"


def secret_auth_method(metadata: ServerMetadata) -> str:
    """How a client with a secret authenticates: basic where offered (RFC 8414's default when
    the server lists none), else post."""
    offered = metadata.token_endpoint_auth_methods_supported
    if offered is None or "client_secret_basic" in offered:
        return "client_secret_basic"
    if "client_secret_post" in offered:
        return "client_secret_post"
    raise OAuthError(
        f"the authorization server {metadata.issuer} offers no client authentication method"
        f" this client has (it offers {', '.join(offered) or 'none'})"
    )


def pre_registered(settings: OAuthSettings, metadata: ServerMetadata) -> Client | None:
    if settings.client_id is None:
        return None
    if settings.client_secret is None:
        return Client(settings.client_id, None, "none")
    return Client(settings.client_id, settings.client_secret, secret_auth_method(metadata))


def metadata_document(settings: OAuthSettings, metadata: ServerMetadata) -> Client | None:
    """The client ID metadata document's URL as the client_id, where the server takes one."""
    url = settings.client_metadata_url
    if url is None or not metadata.client_id_metadata_document_supported:
        return None
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.path in ("", "/"):
        raise OAuthError("client_metadata_url must be an https URL with a path")
    return Client(url, None, "none")


async def register(
    http: httpx.AsyncClient,
    metadata: ServerMetadata,
    *,
    redirect_uris: Sequence[str],
    grant_types: Sequence[str],
    scopes: Sequence[str],
) -> Client:
    """RFC 7591 dynamic registration; OAuthError when the server has none or refuses."""
    endpoint = metadata.registration_endpoint
    if endpoint is None:
        raise OAuthError(
            f"the authorization server {metadata.issuer} supports no dynamic client"
            " registration: configure a client_id (and client_secret) for this upstream"
        )
    offered = metadata.token_endpoint_auth_methods_supported
    method = "none" if offered is None or "none" in offered else secret_auth_method(metadata)
    request: dict[str, object] = {
        "client_name": CLIENT_NAME,
        "grant_types": list(grant_types),
        "token_endpoint_auth_method": method,
        # A program on the user's machine (a loopback redirect), not a web site.
        "application_type": "native",
    }
    if redirect_uris:
        request["redirect_uris"] = list(redirect_uris)
        request["response_types"] = ["code"]
    if scopes:
        request["scope"] = " ".join(scopes)
    what = f"client registration at {endpoint}"
    answer = await request_json(http, "POST", endpoint, what=what, json_body=request)
    if answer.status not in (200, 201):
        _, text = describe_refusal(answer.body, ())
        raise OAuthError(f"{what}: refused (HTTP {answer.status}, {text})")
    body = answer.body
    if not isinstance(body, dict):
        raise OAuthError(f"{what}: the answer is not a JSON object")
    client_id = body.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise OAuthError(f"{what}: the answer has no client_id")
    secret = body.get("client_secret")
    if secret is not None and (not isinstance(secret, str) or not secret):
        raise OAuthError(f"{what}: the client_secret is not a string")
    # RFC 7591 §3.2.1: the server answers with what it registered; silence means as asked.
    granted = body.get("token_endpoint_auth_method") or method
    if granted not in AUTH_METHODS:
        raise OAuthError(
            f"{what}: token_endpoint_auth_method {shown(granted)} is not supported here"
        )
    if granted != "none" and secret is None:
        raise OAuthError(f"{what}: {granted} without a client_secret")
    return Client(client_id, secret if granted != "none" else None, granted)
