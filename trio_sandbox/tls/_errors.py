"""The TLS layer's errors, each one a user can meet: a CA block the tool server printed that
cannot be read, a trust anchor that is not a CA, a private key's place others could read.
"""

from __future__ import annotations

from ..contract import SandboxError


class CaBlockError(SandboxError, ValueError):
    """The CA block is missing, unfinished, empty, nested or does not hold a certificate."""


class UnusableCaError(SandboxError, ValueError):
    """A trust anchor that is not one or more PEM certificates, or a certificate that is no CA."""


class UnsafeKeyPlaceError(SandboxError, PermissionError):
    """A private key, or the directory it goes to, that others may read (refused, as ssh does)."""


class NotAPrivateDirectoryError(SandboxError, NotADirectoryError):
    """The path where a client bundle (with its private key) goes is not a directory."""


class InterceptionScopeError(SandboxError, ValueError):
    """A host the interception CA may not vouch for (outside the inject_secrets scope), or a
    scope that is not one."""


class InterceptionAuthorityError(SandboxError, ValueError):
    """An interception CA (certificate and key, PEM) that cannot be read or does not belong
    together; the message never quotes the key."""
