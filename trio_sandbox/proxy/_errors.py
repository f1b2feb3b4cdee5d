"""What can go wrong in the proxy, in one leaf: every error here derives from
:class:`~trio_sandbox.contract.SandboxError` through :class:`ProxyError`."""

from __future__ import annotations

import enum

from ..contract import SandboxError


class ProxyError(SandboxError):
    """Base of the proxy's errors."""


class ConfigError(ProxyError, ValueError):
    """A configuration file or option that cannot be used; the message names the key."""


class NameCollisionError(ProxyError, ValueError):
    """Two upstreams would show a tool or prompt under the same name."""

    def __init__(self, kind: str, name: str, first: str, second: str) -> None:
        super().__init__(
            f"{kind} name {name!r} is offered by both upstream {first!r} and upstream {second!r}; "
            "give one of them a distinct prefix"
        )
        self.kind = kind
        self.name = name
        self.upstreams = (first, second)


class Unserved(enum.Enum):
    """Why an upstream did not serve a call, decided where it is known (the upstream's session
    handling): whether the call may have run follows from it, and is never worked out again."""

    # It was sent on a session that went away (or broke) before the answer: it may or may not
    # have run, and it is not retried behind the caller's back.
    LOST_IN_FLIGHT = "lost in flight"
    # No session came within the upstream's ``call_wait``: it was not run.
    NO_SESSION = "no session"
    # The upstream will not serve again (a per-session sandbox that could not start, or the
    # bound on them): it was not run.
    REFUSED = "refused"

    @property
    def may_have_run(self) -> bool:
        return self is Unserved.LOST_IN_FLIGHT


class UpstreamUnavailable(ProxyError):
    """The upstream has no working session, or lost it while a call was in flight."""

    def __init__(self, upstream: str, reason: str, unserved: Unserved) -> None:
        super().__init__(f"upstream {upstream!r} is unavailable: {reason}")
        self.upstream = upstream
        self.reason = reason
        self.unserved = unserved


class UpstreamNeedsLogin(UpstreamUnavailable):
    """An OAuth upstream has no usable authorization: a person must log in again (its tokens
    are missing, or its authorization server refused the refresh token). Not run."""

    def __init__(self, upstream: str, reason: str) -> None:
        super().__init__(
            upstream,
            f"it needs a login ({reason}): run `trio-sandbox auth login {upstream}`",
            Unserved.REFUSED,
        )
