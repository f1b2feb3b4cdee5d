"""The egress proxy's errors. A user meets :class:`PolicyError` (an ``allow_domains`` or
``deny_domains`` entry that cannot be a rule) and :class:`DestinationError` (a malformed host,
port or address); the others are answered to the sandboxed client by the proxy itself (an HTTP
status, a SOCKS reply) and never leave it. ``shown`` quotes a value for these messages and for
log lines.
"""

from __future__ import annotations

from ..contract import SandboxError


class DestinationError(SandboxError, ValueError):
    """A host, port or address that is not well formed; ``reason`` says what is wrong."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{shown(text)}: {reason}")
        self.text = text
        self.reason = reason


def shown(text: str, limit: int = 80) -> str:
    """``text`` quoted for a log line or an error: escaped, and cut if long."""
    quoted = repr(text[:limit])
    return quoted if len(text) <= limit else quoted + "..."


class PolicyError(SandboxError, ValueError):
    """An entry of ``allow_domains`` or ``deny_domains`` that cannot be a rule, and why."""

    def __init__(self, setting: str, entry: object, reason: str) -> None:
        text = shown(entry) if isinstance(entry, str) else repr(entry)
        super().__init__(f"{setting} entry {text}: {reason}")
        self.setting = setting
        self.entry = entry
        self.reason = reason


class InjectionError(SandboxError, ValueError):
    """An ``inject_secrets`` secret that cannot be injected: ``name`` is the secret's name and
    ``reason`` never holds its value."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"inject_secrets {shown(name)}: {reason}")
        self.name = name
        self.reason = reason


class HttpError(Exception):
    """A message this proxy will not pass on: ``status`` is what the client is answered."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class SocksError(Exception):
    """A SOCKS message the proxy refuses; ``reply`` is the code to answer with, or None when
    the peer does not speak SOCKS5 and gets no answer at all."""

    def __init__(self, reply: int | None, reason: str) -> None:
        super().__init__(reason)
        self.reply = reply
        self.reason = reason


class RefusalQueryError(ValueError):
    """The query of a refusals request is not ``since=<seconds since the epoch>``."""
