"""What an ``mcpServers`` entry says about its OAuth client (``"auth": "oauth"``)."""

from __future__ import annotations

from typing import Literal

import attrs


@attrs.frozen
class OAuthSettings:
    """How to be a client of an upstream's authorization server.

    ``client_id`` names a pre-registered client (with ``client_secret`` for a confidential one);
    without it the client registers itself: with ``client_metadata_url`` (an https URL, the
    client ID metadata document) where the server supports that, else by dynamic registration.
    ``scopes`` () lets the spec's order choose: the 401's ``scope``, else the protected
    resource's ``scopes_supported``, else none. ``issuer`` is the authorization server the
    client is registered with, compared as a string with the issuer discovery finds: required
    with a ``client_secret`` (the MCP server's metadata names the authorization server, so
    without it a malicious MCP server could have the secret sent to a server of its choice).
    """

    grant: Literal["authorization_code", "client_credentials"] = "authorization_code"
    client_id: str | None = None
    client_secret: str | None = attrs.field(default=None, repr=False)
    client_metadata_url: str | None = None
    scopes: tuple[str, ...] = ()
    issuer: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.client_secret is not None and not self.issuer:
            raise ValueError(
                "oauth: a client_secret needs the issuer of the authorization server it was"
                ' registered with ("issuer" in the "oauth" table): the secret is sent to that'
                " server only"
            )
