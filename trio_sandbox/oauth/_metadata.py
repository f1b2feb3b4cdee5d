"""Discovery: the protected resource's metadata (RFC 9728) and its authorization server's
(RFC 8414 / OpenID Connect discovery), in the orders the MCP authorization spec gives, checked
before anything in them is used."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import attrs
import httpx

from ._errors import OAuthError
from ._http import request_json, require_secure_url, shown

_PRM_SUFFIX: Final = "/.well-known/oauth-protected-resource"


@attrs.frozen
class ResourceMetadata:
    """What a protected resource says about itself (RFC 9728 §2)."""

    resource: str
    authorization_servers: tuple[str, ...]
    scopes_supported: tuple[str, ...] | None


@attrs.frozen
class ServerMetadata:
    """What an authorization server says about itself (RFC 8414 §2), the parts used here."""

    issuer: str
    authorization_endpoint: str | None
    token_endpoint: str
    registration_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    scopes_supported: tuple[str, ...] | None = None
    grant_types_supported: tuple[str, ...] | None = None
    token_endpoint_auth_methods_supported: tuple[str, ...] | None = None
    code_challenge_methods_supported: tuple[str, ...] | None = None
    client_id_metadata_document_supported: bool = False
    iss_parameter_supported: bool = False


def canonical_resource(url: str) -> str:
    """The MCP server's canonical URI (RFC 8707, the spec's "canonical server URI"): scheme
    and host lower-cased, no fragment, no trailing slash after a path."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/") if parts.path not in ("", "/") else ""
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


def resource_covers(resource: str, server_url: str) -> bool:
    """The metadata's ``resource`` is the server's URL or a path prefix of it on the same
    origin (metadata at the root names the origin)."""
    ours = urlsplit(canonical_resource(server_url))
    try:
        theirs = urlsplit(canonical_resource(resource))
        same_origin = (theirs.scheme, theirs.hostname, theirs.port) == (
            ours.scheme,
            ours.hostname,
            ours.port,
        )
    except ValueError:
        return False
    if not same_origin or theirs.query:
        return False
    prefix = theirs.path.rstrip("/")
    return ours.path == prefix or ours.path.startswith(prefix + "/")


def _strings(data: dict[str, object], name: str, what: str) -> tuple[str, ...] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise OAuthError(f"{what}: {name} is not a list of strings")
    return tuple(value)


def parse_resource_metadata(data: object, server_url: str, where: str) -> ResourceMetadata:
    what = f"the protected resource metadata at {where}"
    if not isinstance(data, dict):
        raise OAuthError(f"{what} is not a JSON object")
    resource = data.get("resource")
    if not isinstance(resource, str) or not resource:
        raise OAuthError(f"{what} names no resource")
    if not resource_covers(resource, server_url):
        # RFC 9728 §3.3: metadata for another resource must not be used (a token for it would
        # be a token for someone else's server).
        raise OAuthError(f"{what} is for another resource ({shown(resource)}, not {server_url!r})")
    servers = _strings(data, "authorization_servers", what) or ()
    if not servers:
        raise OAuthError(f"{what} names no authorization server")
    return ResourceMetadata(resource, servers, _strings(data, "scopes_supported", what))


def parse_server_metadata(
    data: object, issuer: str, where: str, *, local: bool = False
) -> ServerMetadata:
    what = f"the authorization server metadata at {where}"
    if not isinstance(data, dict):
        raise OAuthError(f"{what} is not a JSON object")
    if data.get("issuer") != issuer:
        # RFC 8414 §3.3: identical to the issuer the well-known URL was made from, compared as
        # strings (no normalization), or the document is someone else's.
        raise OAuthError(f"{what} is for another issuer (expected {issuer!r})")

    def endpoint(name: str, required: bool) -> str | None:
        value = data.get(name)
        if value is None and not required:
            return None
        return require_secure_url(value, f"{what}: {name}", local=local)

    token_endpoint = endpoint("token_endpoint", True)
    assert token_endpoint is not None
    return ServerMetadata(
        issuer=issuer,
        authorization_endpoint=endpoint("authorization_endpoint", False),
        token_endpoint=token_endpoint,
        registration_endpoint=endpoint("registration_endpoint", False),
        device_authorization_endpoint=endpoint("device_authorization_endpoint", False),
        scopes_supported=_strings(data, "scopes_supported", what),
        grant_types_supported=_strings(data, "grant_types_supported", what),
        token_endpoint_auth_methods_supported=_strings(
            data, "token_endpoint_auth_methods_supported", what
        ),
        code_challenge_methods_supported=_strings(data, "code_challenge_methods_supported", what),
        client_id_metadata_document_supported=data.get("client_id_metadata_document_supported")
        is True,
        iss_parameter_supported=data.get("authorization_response_iss_parameter_supported") is True,
    )


def resource_metadata_urls(server_url: str) -> list[str]:
    """RFC 9728 §3.1 well-known URIs, the path-inserted one first, then the root."""
    parts = urlsplit(server_url)
    path = parts.path.rstrip("/")
    urls = []
    if path:
        urls.append(urlunsplit((parts.scheme, parts.netloc, _PRM_SUFFIX + path, "", "")))
    urls.append(urlunsplit((parts.scheme, parts.netloc, _PRM_SUFFIX, "", "")))
    return urls


def server_metadata_urls(issuer: str) -> list[str]:
    """The spec's order: RFC 8414 path-inserted, OpenID path-inserted, OpenID path-appended;
    for an issuer without a path, RFC 8414 then OpenID at the root."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")

    def at(new_path: str) -> str:
        return urlunsplit((parts.scheme, parts.netloc, new_path, "", ""))

    if not path:
        return [
            at("/.well-known/oauth-authorization-server"),
            at("/.well-known/openid-configuration"),
        ]
    return [
        at("/.well-known/oauth-authorization-server" + path),
        at("/.well-known/openid-configuration" + path),
        at(path + "/.well-known/openid-configuration"),
    ]


async def fetch_resource_metadata(
    http: httpx.AsyncClient, server_url: str, advertised: str | None, *, local: bool
) -> ResourceMetadata | None:
    """The metadata from the 401's ``resource_metadata`` URL, then (a 4xx there) the
    well-known URIs in order; None when the server publishes none (a 4xx at every place)."""
    candidates = resource_metadata_urls(server_url)
    if advertised is not None:
        # RFC 9728 lets the metadata live on another host: what it says is checked instead.
        url = require_secure_url(advertised, "the resource_metadata URL of the 401", local=local)
        candidates = [url, *(other for other in candidates if other != url)]
    for url in candidates:
        answer = await request_json(http, "GET", url, what=f"protected resource metadata {url}")
        if answer.status == 200:
            return parse_resource_metadata(answer.body, server_url, url)
        if not 400 <= answer.status < 500:
            raise OAuthError(f"protected resource metadata {url}: HTTP {answer.status}")
    return None


async def fetch_server_metadata(
    http: httpx.AsyncClient, issuer: str, *, local: bool
) -> ServerMetadata:
    """The authorization server's metadata, tried at each well-known URI in the spec's order."""
    require_secure_url(issuer, "the authorization server's issuer", local=local)
    tried: list[str] = []
    for url in server_metadata_urls(issuer):
        answer = await request_json(http, "GET", url, what=f"authorization server metadata {url}")
        if answer.status == 200 and isinstance(answer.body, dict):
            return parse_server_metadata(answer.body, issuer, url, local=local)
        if not 400 <= answer.status < 500 and answer.status != 200:
            raise OAuthError(f"authorization server metadata {url}: HTTP {answer.status}")
        tried.append(url)
    raise OAuthError(f"no authorization server metadata for {issuer} (tried {', '.join(tried)})")


def legacy_server_metadata(server_url: str) -> ServerMetadata:
    """The 2025-03-26 spec's fallback: no metadata anywhere, so the default endpoints at the
    MCP server's origin."""
    parts = urlsplit(server_url)

    def at(path: str) -> str:
        return urlunsplit((parts.scheme, parts.netloc, path, "", ""))

    return ServerMetadata(
        issuer=at(""),
        authorization_endpoint=at("/authorize"),
        token_endpoint=at("/token"),
        registration_endpoint=at("/register"),
        # Assumed: that spec required PKCE S256 of every client and server.
        code_challenge_methods_supported=("S256",),
    )


def pick_scopes(
    configured: Sequence[str], challenged: Sequence[str], metadata: ResourceMetadata | None
) -> tuple[str, ...]:
    """The spec's scope selection: configured, else the challenge's ``scope``, else the
    resource's ``scopes_supported``, else none."""
    if configured:
        return tuple(configured)
    if challenged:
        return tuple(challenged)
    if metadata is not None and metadata.scopes_supported:
        return metadata.scopes_supported
    return ()
