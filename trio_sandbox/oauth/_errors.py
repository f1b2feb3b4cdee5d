"""The oauth layer's errors. Their messages never carry a token, a code or a client secret."""

from __future__ import annotations

from ..contract import SandboxError


class OAuthError(SandboxError):
    """An authorization server (or a protected resource's metadata) misbehaved or refused."""


class LoginRequired(SandboxError):
    """An upstream needs a person to log in (again): no usable tokens, a refresh token the
    authorization server refused, or a flow that needs a browser where none is at hand."""

    def __init__(self, upstream: str, reason: str) -> None:
        super().__init__(
            f"upstream {upstream!r} needs a login ({reason}):"
            f" run `trio-sandbox auth login {upstream}`"
        )
        self.upstream = upstream
        self.reason = reason

    def __reduce__(self) -> tuple[type[LoginRequired], tuple[str, str]]:
        return (type(self), (self.upstream, self.reason))


class TokenStoreError(OAuthError):
    """The token store cannot be used: a file or directory refused (a link, someone else's, hard
    linked, readable by others) or not a token file. Names the file, never its content."""
