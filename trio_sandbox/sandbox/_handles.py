"""Sandbox handles: a name for one more sandbox of a client, that only that client can use.

A client that wants a sandbox apart from its own (one per call site, per subagent, per task)
carries a handle in the ``_meta`` of its requests (:data:`HANDLE_META_KEY`); every request with
the same handle, from the same client, is served by the same sandbox. A remote client gets a
handle by reading :data:`HANDLE_RESOURCE`; the embedder gets one from ``Sandbox.session()``.

The proxy issues handles and keeps nothing per handle until one is used: a handle is
``sbx1.<nonce>.<tag>``, 128 random bits and an HMAC of the nonce and the identity it was issued
to (the client certificate's fingerprint or the token's digest, "anonymous" on a face that
authenticates no one) under a key made for this proxy. A handle presented by another identity
does not verify and is refused (:class:`SandboxHandleRefused`) before anything is started: the
MCP specification's "possession of a state handle is not authentication". On a face without
authentication every client is the one anonymous client, so there a handle is a bearer
capability of 128 random bits, as the specification advises for unauthenticated servers; it
still keeps one handle's sandbox apart from another's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from typing import Final

import attrs

from ..mcp import ClientIdentity
from ._errors import SandboxHandleError, SandboxHandleRefused

# The ``_meta`` key of a request that names its sandbox by handle.
HANDLE_META_KEY: Final = "io.github.trio-sandbox/sandbox"
# Reading this resource issues a fresh handle to the reader.
HANDLE_RESOURCE: Final = "trio-sandbox://sandbox/new-handle"
# Who the handles of a face without authentication belong to.
ANONYMOUS: Final = "anonymous"

_VERSION: Final = "sbx1"
_NONCE_BYTES: Final = 16
_TAG_BYTES: Final = 16
# 16 bytes in unpadded URL-safe base64 are 22 characters.
_SHAPE: Final = re.compile(r"sbx1\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{22})")
_MAX_SHOWN: Final = 40


@attrs.frozen
class SandboxHandle:
    """A handle as parsed (not yet verified): its nonce and tag."""

    nonce: bytes
    tag: bytes

    def format(self) -> str:
        return f"{_VERSION}.{_b64(self.nonce)}.{_b64(self.tag)}"


def parse_handle(value: object) -> SandboxHandle:
    """The handle ``value`` spells; :class:`SandboxHandleError` when it is not one."""
    if not isinstance(value, str):
        raise SandboxHandleError(
            f"the sandbox handle in _meta {HANDLE_META_KEY!r} must be a string, not "
            f"{type(value).__name__}; read {HANDLE_RESOURCE} for one"
        )
    match = _SHAPE.fullmatch(value)
    nonce = _unb64(match.group(1)) if match else None
    tag = _unb64(match.group(2)) if match else None
    if nonce is None or tag is None:
        raise SandboxHandleError(
            f"{_shown(value)} is not a sandbox handle (sbx1.<nonce>.<tag>, as issued by "
            f"reading {HANDLE_RESOURCE})"
        )
    return SandboxHandle(nonce, tag)


def owner_of(identity: ClientIdentity | None) -> str:
    """Who handles are issued to: an identity's key, or the one anonymous client."""
    return identity.key if identity is not None else ANONYMOUS


@attrs.define(eq=False)
class HandleIssuer:
    """Issues handles bound to a client's identity, and checks them (nothing kept per handle)."""

    _secret: bytes = attrs.field(factory=lambda: secrets.token_bytes(32), repr=False)

    def issue(self, identity: ClientIdentity | None) -> str:
        """A fresh handle that only ``identity`` (None: the anonymous client) can use."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return SandboxHandle(nonce, self._tag(nonce, owner_of(identity))).format()

    def sandbox_key(self, value: object, identity: ClientIdentity | None) -> str:
        """The key of the sandbox ``value`` names for ``identity``; raises
        :class:`SandboxHandleError` for a malformed handle and :class:`SandboxHandleRefused` for
        one not issued to ``identity``."""
        handle = parse_handle(value)
        owner = owner_of(identity)
        if not hmac.compare_digest(handle.tag, self._tag(handle.nonce, owner)):
            raise SandboxHandleRefused(
                "this sandbox handle was not issued to this client (a handle works only for the "
                f"client that read it from {HANDLE_RESOURCE}); no sandbox was made for it"
            )
        return f"{owner} handle {_b64(handle.nonce)}"

    def _tag(self, nonce: bytes, owner: str) -> bytes:
        message = b"\0".join((_VERSION.encode(), owner.encode(), nonce))
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:_TAG_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    """The 16 bytes ``text`` encodes, when it is their one canonical spelling."""
    try:
        raw = base64.urlsafe_b64decode(text + "==")
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == _NONCE_BYTES and _b64(raw) == text else None


def _shown(value: str) -> str:
    """``value`` for an error message: printable, and bounded once escaped (an astral
    character is ten characters as an escape)."""
    shown = ascii(value[: _MAX_SHOWN + 1])
    return shown if len(shown) <= _MAX_SHOWN + 2 else shown[:_MAX_SHOWN] + "..."
