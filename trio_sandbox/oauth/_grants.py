"""The token endpoint: requests built with authlib (grant parameters, the client
authentication methods), answers checked here before anything in them is used."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qsl, quote, quote_plus, urlencode

import attrs
import httpx
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_token_request

from ._errors import OAuthError
from ._http import request_json

_ERROR_CODE: Final = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}")
_MAX_DESCRIPTION: Final = 200
# RFC 6749 §3.3: scope = scope-token *( SP scope-token ), scope-token = 1*NQCHAR.
_SCOPE: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")
_MAX_SCOPE: Final = 4096
AUTH_METHODS: Final = ("none", "client_secret_basic", "client_secret_post")
DEVICE_CODE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"


@attrs.frozen
class Client:
    """A registration at one authorization server (repr hides the secret)."""

    client_id: str
    client_secret: str | None = attrs.field(repr=False)
    auth_method: str


@attrs.frozen
class Grant:
    """A token endpoint's successful answer (repr hides the tokens)."""

    access_token: str = attrs.field(repr=False)
    refresh_token: str | None = attrs.field(repr=False)
    expires_in: float | None
    scope: str | None


class TokenEndpointError(OAuthError):
    """The token endpoint refused (``error`` is its RFC 6749 §5.2 code, "" when it gave none)."""

    def __init__(self, message: str, error: str) -> None:
        super().__init__(message)
        self.error = error


def client_secrets(client: Client) -> list[str]:
    """What a request carries of the client's secret: the secret, and the Basic credential
    (base64 of id:secret) where that method sends it."""
    if not client.client_secret:
        return []
    basic = f"{client.client_id}:{client.client_secret}".encode("latin1", "replace")
    return [client.client_secret, base64.b64encode(basic).decode()]


def _spellings(secret: str) -> set[str]:
    # An echo may come URL-encoded (a form), JSON-escaped (a JSON body), or as sent.
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        json.dumps(secret)[1:-1],
        json.dumps(secret)[1:-1].replace("/", "\\/"),
    }


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` without any of ``secrets`` in it (an echo of what was sent), in any of the
    spellings an echo takes; longest first, so a shorter one inside a longer is not left."""
    spellings = {
        spelling
        for secret in secrets
        if secret and len(secret) >= 4
        for spelling in _spellings(secret)
    }
    for spelling in sorted(spellings, key=len, reverse=True):
        text = text.replace(spelling, "[redacted]")
    return text


def describe_refusal(body: object, secrets: Iterable[str | None]) -> tuple[str, str]:
    """(error code, "code: description") of an OAuth error answer, bounded and scrubbed."""
    if not isinstance(body, dict):
        return "", "no OAuth error in the answer"
    error = body.get("error")
    code = error if isinstance(error, str) and _ERROR_CODE.fullmatch(error) else ""
    description = body.get("error_description")
    text = code or "an unnamed error"
    if isinstance(description, str) and description:
        # Scrubbed whole, then cut: a cut first could leave a secret's prefix at the end.
        scrubbed = scrub(description, secrets)[:_MAX_DESCRIPTION]
        text += ": " + "".join(ch if ch.isprintable() else " " for ch in scrubbed)
    return code, text


def parse_grant(body: object, what: str) -> Grant:
    """A token response (RFC 6749 §5.1); OAuthError naming what is wrong, never a value."""
    if not isinstance(body, dict):
        raise OAuthError(f"{what}: the answer is not a JSON object")
    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise OAuthError(f"{what}: the answer has no access_token")
    if any(ord(ch) < 0x21 or ord(ch) > 0x7E for ch in access_token):
        raise OAuthError(f"{what}: the access_token has characters a header cannot carry")
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise OAuthError(f"{what}: the token_type is not Bearer")
    refresh_token = body.get("refresh_token")
    if refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token):
        raise OAuthError(f"{what}: the refresh_token is not a string")
    expires_in = body.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)  # seen in the wild: a number sent as a string
    if expires_in is not None and (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, (int, float))
        or not 0 <= expires_in < 10**10
    ):
        raise OAuthError(f"{what}: expires_in is not a number of seconds")
    scope = body.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise OAuthError(f"{what}: the scope is not a string")
    if scope is not None and (len(scope) > _MAX_SCOPE or not _SCOPE.fullmatch(scope)):
        # Shown to people and sent back in requests: only what RFC 6749 allows (no controls,
        # no terminal escapes, no quotes or backslashes, single spaces between scopes).
        raise OAuthError(
            f"{what}: the scope is not space-separated scope tokens (RFC 6749 section 3.3)"
        )
    return Grant(
        access_token,
        refresh_token,
        None if expires_in is None else float(expires_in),
        scope,
    )


def client_auth(client: Client, url: str, body: str) -> tuple[dict[str, str], str]:
    """Headers and body of a request to ``url`` with the client's authentication method."""
    _, headers, body = ClientAuth(
        client.client_id, client.client_secret or "", client.auth_method
    ).prepare("POST", url, {}, body)
    if client.auth_method == "client_secret_basic" and "client_id" not in dict(parse_qsl(body)):
        # RFC 6749 §3.2.1 lets the client name itself in the form too (not its secret); the
        # official SDK's token endpoint refuses a basic-authenticated request without it.
        body = (
            f"{body}&{urlencode({'client_id': client.client_id})}"
            if body
            else urlencode({"client_id": client.client_id})
        )
    return dict(headers), body


async def token_request(
    http: httpx.AsyncClient,
    token_endpoint: str,
    client: Client,
    grant_type: str,
    what: str,
    **parameters: str | None,
) -> Grant:
    """One token request; TokenEndpointError with the server's error code when refused."""
    body = prepare_token_request(
        grant_type, **{name: value for name, value in parameters.items() if value}
    )
    headers, body = client_auth(client, token_endpoint, body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    answer = await request_json(
        http, "POST", token_endpoint, what=what, headers=headers.items(), content=body.encode()
    )
    if answer.status == 200:
        return parse_grant(answer.body, what)
    secrets = [*client_secrets(client), *parameters.values()]
    code, text = describe_refusal(answer.body, secrets)
    raise TokenEndpointError(f"{what}: refused (HTTP {answer.status}, {text})", code)
