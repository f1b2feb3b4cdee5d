"""Who a request's client proved to be, as its transport authenticated it.

A face that authenticates its clients (mutual TLS: the peer's certificate; a bearer token) tags
each request with a :class:`ClientIdentity`; a face that does not (stdio, in-process, plain HTTP
on loopback) leaves it None. The identity is a digest, never the credential: a certificate by its
SHA-256 fingerprint (the certificate is public), a token by an HMAC-SHA256 under a key made for
this process (so that even a short token cannot be guessed back from a key that leaked into a
log). Two requests with the same credential have equal identities within one process.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import MutableMapping
from typing import Any, Final

import attrs

# Made once per process: token digests are comparable within the process, useless outside it.
_TOKEN_DIGEST_KEY: Final = secrets.token_bytes(32)

# Where an ASGI scope carries the identity its face authenticated (the value: a ClientIdentity).
IDENTITY_SCOPE_KEY: Final = "trio_sandbox.client_identity"


class IdentityKind(enum.Enum):
    CERTIFICATE = "certificate"
    TOKEN = "token"


@attrs.frozen
class ClientIdentity:
    """An authenticated client, by the digest of its credential (hex SHA-256)."""

    kind: IdentityKind
    digest: str = attrs.field(repr=lambda digest: f"{digest[:12]}...")

    @classmethod
    def of_certificate(cls, der: bytes) -> ClientIdentity:
        """The client whose certificate (DER) the TLS handshake verified: its fingerprint."""
        return cls(IdentityKind.CERTIFICATE, hashlib.sha256(der).hexdigest())

    @classmethod
    def of_token(cls, token: str | bytes) -> ClientIdentity:
        """The client that presented this bearer token: a keyed digest, never the token."""
        raw = token.encode() if isinstance(token, str) else token
        return cls(IdentityKind.TOKEN, hmac.new(_TOKEN_DIGEST_KEY, raw, hashlib.sha256).hexdigest())

    @property
    def key(self) -> str:
        """One string per identity (kind and digest), for keying what belongs to it."""
        return f"{self.kind.value}:{self.digest}"


def identity_of_scope(scope: MutableMapping[str, Any]) -> ClientIdentity | None:
    """The identity an ASGI scope's face authenticated, if any."""
    extensions = scope.get("extensions")
    found = extensions.get(IDENTITY_SCOPE_KEY) if isinstance(extensions, dict) else None
    return found if isinstance(found, ClientIdentity) else None


def set_scope_identity(scope: MutableMapping[str, Any], identity: ClientIdentity) -> None:
    """Tag an ASGI scope with the identity its face authenticated."""
    extensions = scope.get("extensions")
    if not isinstance(extensions, dict):
        extensions = scope["extensions"] = {}
    extensions[IDENTITY_SCOPE_KEY] = identity
