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
    resource's ``scopes_supported``, else none.
    """

    grant: Literal["authorization_code", "client_credentials"] = "authorization_code"
    client_id: str | None = None
    client_secret: str | None = attrs.field(default=None, repr=False)
    client_metadata_url: str | None = None
    scopes: tuple[str, ...] = ()
