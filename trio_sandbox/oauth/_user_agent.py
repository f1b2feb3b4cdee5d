"""The person's side of an authorization-code flow: a browser that goes to the authorization
URL and comes back to a redirect URI (a loopback listener, or the conformance suite's headless
stand-in)."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class Redirect(Protocol):
    """One authorization-code round trip through a person's browser."""

    @property
    def uri(self) -> str:
        """The redirect_uri to register and send."""
        ...

    async def authorize(self, authorization_url: str) -> Mapping[str, str]:
        """Send the person to ``authorization_url``; the query parameters the redirect came
        back with (code, state, iss, error, ...)."""
        ...


class UserAgent(Protocol):
    def redirect(self) -> AbstractAsyncContextManager[Redirect]:
        """A redirect URI that is listened on while the block runs."""
        ...
