"""What the token store keeps per upstream (:class:`Tokens`), the store's protocol, and the
in-memory store of tests and the conformance client."""

from __future__ import annotations

from typing import Protocol

import attrs

_AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")


@attrs.frozen
class Tokens:
    """One upstream's client registration and tokens (repr hides every secret).

    ``server_url`` is the MCP server they are for: an entry for another URL is not used.
    ``expires_at`` is in ``time.time()`` seconds, None when the server did not say.
    ``wanted_scope`` is what the server asked for (a 403 insufficient_scope) that an unattended
    client could not get: the next login asks for it (with what was granted), then it is gone.
    """

    server_url: str
    issuer: str
    token_endpoint: str
    client_id: str
    client_secret: str | None = attrs.field(repr=False)
    token_endpoint_auth_method: str
    access_token: str = attrs.field(repr=False)
    refresh_token: str | None = attrs.field(repr=False)
    expires_at: float | None
    scope: str | None
    wanted_scope: str | None = None

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "server_url": self.server_url,
            "issuer": self.issuer,
            "token_endpoint": self.token_endpoint,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "scope": self.scope,
        }
        if self.wanted_scope is not None:  # absent otherwise: files as before it existed
            data["wanted_scope"] = self.wanted_scope
        return data

    @classmethod
    def from_json(cls, data: object) -> Tokens:
        """The value :meth:`to_json` wrote; ValueError naming the field that is wrong (never
        its value: it may be a secret)."""
        if not isinstance(data, dict):
            raise ValueError("stored tokens: not a JSON object")

        def text(name: str) -> str:
            value = data.get(name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"stored tokens: {name} is missing or not a string")
            return value

        def optional_text(name: str) -> str | None:
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"stored tokens: {name} is not a string")
            return value

        method = text("token_endpoint_auth_method")
        if method not in _AUTH_METHODS:
            raise ValueError(
                "stored tokens: token_endpoint_auth_method is not one of "
                + ", ".join(_AUTH_METHODS)
            )
        expires_at = data.get("expires_at")
        if expires_at is not None and (
            isinstance(expires_at, bool) or not isinstance(expires_at, (int, float))
        ):
            raise ValueError("stored tokens: expires_at is not a number")
        return cls(
            server_url=text("server_url"),
            issuer=text("issuer"),
            token_endpoint=text("token_endpoint"),
            client_id=text("client_id"),
            client_secret=optional_text("client_secret"),
            token_endpoint_auth_method=method,
            access_token=text("access_token"),
            refresh_token=optional_text("refresh_token"),
            expires_at=None if expires_at is None else float(expires_at),
            scope=optional_text("scope"),
            wanted_scope=optional_text("wanted_scope"),
        )


class TokenStore(Protocol):
    """Tokens per upstream name; a file store keeps them 0600 in the user's state directory."""

    def load(self, name: str) -> Tokens | None: ...

    def save(self, name: str, tokens: Tokens) -> None: ...

    def replace(self, name: str, tokens: Tokens, expected: Tokens | None) -> Tokens | None:
        """Save ``tokens`` only if the store still holds ``expected`` (or nothing): what a
        refresh started from; else keep what is there (a login made meanwhile). Returns what
        the store holds afterwards."""
        ...

    def delete(self, name: str) -> bool: ...


@attrs.define(eq=False)
class MemoryTokenStore:
    """Tokens in a dict: for tests and the conformance client."""

    entries: dict[str, Tokens] = attrs.field(factory=dict, repr=False)

    def load(self, name: str) -> Tokens | None:
        return self.entries.get(name)

    def save(self, name: str, tokens: Tokens) -> None:
        self.entries[name] = tokens

    def replace(self, name: str, tokens: Tokens, expected: Tokens | None) -> Tokens | None:
        current = self.entries.get(name)
        if current is not None and current != expected:
            return current
        self.entries[name] = tokens
        return tokens

    def delete(self, name: str) -> bool:
        return self.entries.pop(name, None) is not None
