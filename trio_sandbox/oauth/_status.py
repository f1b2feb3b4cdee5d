"""What ``auth status`` and the proxy's status say about one upstream's authorization."""

from __future__ import annotations

import enum

import attrs


class AuthState(enum.Enum):
    LOGGED_IN = "logged_in"  # an access token that has not expired (or says no expiry)
    EXPIRED = "expired"  # expired, with a refresh token to get a new one without anyone
    NEEDS_LOGIN = "needs_login"  # no tokens, or the server refused the refresh token
    REFRESH_FAILING = "refresh_failing"  # refreshes fail (the server unreachable, 5xx): retried


@attrs.frozen
class AuthStatus:
    """One upstream's authorization now; no secret in it."""

    state: AuthState
    reason: str | None = None
    expires_at: float | None = None  # time.time() seconds, of the access token
    next_retry_at: float | None = None  # time.time() seconds, of the next refresh attempt
