"""The egress policy: destination rules, and the decision for one host and port.

Rules come in three kinds: an exact host name (``pypi.org``), a wildcard over the subdomains of a
name (``*.example.com``: ``a.example.com`` and ``a.b.example.com``, not ``example.com``), and an
IP literal (``127.0.0.2:8080``, ``[::1]:8443``). A rule without ``:PORT`` allows ports 80 and 443
only; in the deny list it denies every port. A name in the deny list denies its subdomains too
(denying ``bad.example`` while ``x.bad.example`` stays open would surprise). Deny wins over allow.
IP destinations are allowed only by an IP rule (never by a name or a wildcard).

Refusal reasons go back to the sandbox, so they never name an address a name resolved to (which
would tell the sandbox what the host's DNS says about a name it may not reach); ``Refused.detail``
carries that, for the host's log only.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final, TypeAlias

import attrs

from ._addresses import is_metadata, special_kind
from ._errors import DestinationError, PolicyError, shown
from ._names import (
    Host,
    IPAddress,
    format_destination,
    format_host,
    parse_host,
    parse_port,
    split_host_port,
)
from ._suffixes import public_suffixes

ALLOW_SETTING: Final = "allow_domains"
DENY_SETTING: Final = "deny_domains"
DEFAULT_PORTS: Final = frozenset({80, 443})
_URL_HINT: Final = "write just the host, e.g. 'pypi.org' or 'pypi.org:8443', not a URL"


class RuleKind(enum.Enum):
    NAME = "name"
    WILDCARD = "wildcard"
    ADDRESS = "address"


@attrs.frozen
class DestinationRule:
    """One parsed entry. For a wildcard, ``host`` is the name its subdomains are under."""

    entry: str
    kind: RuleKind
    host: Host
    port: int | None

    @classmethod
    def parse(cls, entry: object, setting: str = ALLOW_SETTING) -> DestinationRule:
        if not isinstance(entry, str):
            raise PolicyError(setting, entry, "not a string")
        try:
            return cls._parse(entry.strip())
        except DestinationError as error:
            raise PolicyError(setting, entry, error.reason) from None

    @classmethod
    def _parse(cls, entry: str) -> DestinationRule:
        if not entry:
            raise DestinationError(entry, "empty entry")
        if "://" in entry or any(mark in entry for mark in "/?#@"):
            raise DestinationError(entry, _URL_HINT)
        host_text, port_text = split_host_port(entry, bare_ipv6=True)
        port = None if port_text is None else parse_port(port_text, entry)
        if "*" not in host_text:
            host = parse_host(host_text)
            kind = RuleKind.NAME if isinstance(host, str) else RuleKind.ADDRESS
            return cls(entry, kind, host, port)
        if host_text == "*":
            raise DestinationError(entry, "'*' would allow every destination; list the domains")
        base_text = host_text.removeprefix("*.")
        if base_text == host_text or "*" in base_text:
            raise DestinationError(
                entry, "a wildcard is '*.' followed by a domain, e.g. '*.example.com'"
            )
        base = parse_host(base_text)
        if not isinstance(base, str):
            raise DestinationError(entry, "a wildcard cannot cover IP addresses; list each one")
        if "." not in base:
            raise DestinationError(entry, f"covers the whole top-level domain {base!r}")
        if public_suffixes().is_public_suffix(base):
            raise DestinationError(
                entry, f"covers the public suffix {base!r} (every site registered under it)"
            )
        return cls(entry, RuleKind.WILDCARD, base, port)

    def covers_host(self, host: Host, *, subdomains: bool = False) -> bool:
        """``subdomains``: an exact name covers the names under it too (a deny rule's reach)."""
        if self.kind is RuleKind.WILDCARD or (subdomains and self.kind is RuleKind.NAME):
            if isinstance(host, str) and host.endswith("." + str(self.host)):
                return True
            if self.kind is RuleKind.WILDCARD:
                return False
        return host == self.host

    def covers_port(self, port: int, *, portless: frozenset[int] | None) -> bool:
        """``portless``: the ports a rule without ``:PORT`` covers (None: every port)."""
        if self.port is not None:
            return port == self.port
        return portless is None or port in portless

    def denies_some_of(self, rule: DestinationRule) -> bool:
        """Whether this deny rule refuses some of what the allow rule ``rule`` covers (its
        host, or under a wildcard the names a deny name covers), on one of its ports: an
        inject_secrets host it touches is a contradiction, refused at start."""
        if rule.kind is RuleKind.WILDCARD:
            host_denied = self.kind is not RuleKind.ADDRESS and (
                rule.host == self.host or str(rule.host).endswith("." + str(self.host))
            )
        else:
            host_denied = self.covers_host(rule.host, subdomains=True)
        if not host_denied:
            return False
        return self.port is None or rule.port is None or self.port == rule.port

    def ports_text(self) -> str:
        return "ports 80 and 443 only" if self.port is None else f"port {self.port} only"


@attrs.frozen
class Destination:
    """A normalised host and a port, as the proxy was asked for it."""

    host: Host
    port: int

    def __str__(self) -> str:
        return format_destination(self.host, self.port)

    def as_entry(self) -> str:
        """The allow_domains entry that would name exactly this destination."""
        return format_host(self.host) if self.port in DEFAULT_PORTS else str(self)


class RefusalKind(enum.Enum):
    """Why a destination was not reached; the value is the ``X-Proxy-Error`` header."""

    NOT_ALLOWED = "blocked-by-allowlist"
    DENIED = "blocked-by-denylist"
    BLOCKED_ADDRESS = "blocked-address"
    BAD_DESTINATION = "bad-destination"
    UNRESOLVABLE = "dns-failure"
    UNREACHABLE = "upstream-unreachable"
    # inject_secrets: a placeholder where it is not replaced (never silent), and an IP
    # destination that is an address of an injected name (asked for by address, not intercepted).
    SECRET_OUT_OF_SCOPE = "secret-out-of-scope"
    INJECTED_BY_ADDRESS = "injected-by-address"
    # Interception (TLS terminated for an injected host): a request for another host (domain
    # fronting), a client that does not speak TLS, a client or an origin whose TLS failed, an
    # origin that compressed a response although asked for identity (it could not be masked).
    INTERCEPT_MISDIRECTED = "intercept-misdirected"
    INTERCEPT_NOT_TLS = "intercept-not-tls"
    INTERCEPT_CLIENT_TLS = "intercept-client-tls"
    INTERCEPT_ORIGIN_TLS = "intercept-origin-tls"
    INTERCEPT_HTTP2 = "intercept-http2"
    INTERCEPT_ORIGIN_ENCODED = "intercept-origin-encoded"

    @property
    def by_policy(self) -> bool:
        return self in (
            RefusalKind.NOT_ALLOWED,
            RefusalKind.DENIED,
            RefusalKind.BLOCKED_ADDRESS,
            RefusalKind.SECRET_OUT_OF_SCOPE,
            RefusalKind.INJECTED_BY_ADDRESS,
        )

    @property
    def status(self) -> int:
        """The HTTP status a refusal of this kind is answered with."""
        if self.by_policy:
            return 403
        if self is RefusalKind.INTERCEPT_MISDIRECTED:
            return 421
        if self is RefusalKind.INTERCEPT_HTTP2:
            return 505
        if self in (RefusalKind.BAD_DESTINATION, RefusalKind.INTERCEPT_NOT_TLS):
            return 400
        return 502

    @property
    def failed(self) -> bool:
        """Allowed, but it could not be reached (or its TLS could not be made)."""
        return self in (
            RefusalKind.UNRESOLVABLE,
            RefusalKind.UNREACHABLE,
            RefusalKind.INTERCEPT_CLIENT_TLS,
            RefusalKind.INTERCEPT_ORIGIN_TLS,
            RefusalKind.INTERCEPT_ORIGIN_ENCODED,
        )


class Verdict(enum.Enum):
    """What became of a request to reach a destination."""

    ALLOWED = "allowed"
    REFUSED = "refused"  # by the policy, or a destination that is not one
    FAILED = "failed"  # allowed, but it could not be resolved or reached

    @classmethod
    def of(cls, refusal: Refused | None) -> Verdict:
        if refusal is None:
            return cls.ALLOWED
        return cls.FAILED if refusal.kind.failed else cls.REFUSED


@attrs.frozen
class Allowed:
    destination: Destination
    rule: DestinationRule


@attrs.frozen
class Refused:
    """``target``: the destination as shown in messages (the raw text if it did not parse);
    ``reason``: why, as the sandbox may read it (no resolved address); ``detail``: what only the
    host's log shows (the addresses involved); ``error_code``: the errno of a failed
    connection, if that is what refused it."""

    target: str
    kind: RefusalKind
    reason: str
    error_code: int | None = None
    detail: str | None = None

    def __str__(self) -> str:
        return f"{self.target} ({self.reason})"


Decision: TypeAlias = Allowed | Refused


@attrs.frozen
class EgressPolicy:
    """Allow and deny rules; ``decide`` judges a destination, ``check_address`` its addresses."""

    allow: tuple[DestinationRule, ...] = ()
    deny: tuple[DestinationRule, ...] = ()

    @classmethod
    def parse(cls, allow: Iterable[object] = (), deny: Iterable[object] = ()) -> EgressPolicy:
        """Rules from the entries of both settings; :class:`PolicyError` names a bad entry."""
        return cls(
            tuple(DestinationRule.parse(entry, ALLOW_SETTING) for entry in allow),
            tuple(DestinationRule.parse(entry, DENY_SETTING) for entry in deny),
        )

    def decide(self, host: str, port: int) -> Decision:
        """Whether the proxy may go on to resolve and dial ``host:port``, and why not."""
        try:
            destination = Destination(parse_host(host), port)
        except DestinationError as error:
            return Refused(f"{shown(host)}:{port}", RefusalKind.BAD_DESTINATION, error.reason)
        if not 0 < port <= 65535:
            return Refused(str(destination), RefusalKind.BAD_DESTINATION, f"bad port {port}")
        for rule in self.deny:
            if rule.covers_host(destination.host, subdomains=True) and rule.covers_port(
                port, portless=None
            ):
                return Refused(
                    str(destination),
                    RefusalKind.DENIED,
                    f"denied by {DENY_SETTING} entry {rule.entry!r}",
                )
        for rule in self.allow:
            if rule.covers_host(destination.host) and rule.covers_port(
                port, portless=DEFAULT_PORTS
            ):
                return Allowed(destination, rule)
        return Refused(str(destination), RefusalKind.NOT_ALLOWED, self._not_allowed(destination))

    def _not_allowed(self, destination: Destination) -> str:
        reason = f"not in {ALLOW_SETTING}"
        for rule in self.allow:
            if rule.covers_host(destination.host):
                return f"{reason}; {rule.entry!r} covers {rule.ports_text()}"
        if not isinstance(destination.host, str):
            return f"{reason}; an IP address is allowed only by an entry naming it"
        for rule in self.allow:
            if rule.kind is RuleKind.WILDCARD and rule.host == destination.host:
                return f"{reason}; {rule.entry!r} covers subdomains only"
        return reason

    def check_address(self, allowed: Allowed, address: IPAddress) -> Refused | None:
        """Refusal if ``allowed``'s destination resolved to ``address`` must not be dialed."""
        destination = allowed.destination
        port = destination.port
        resolved = f"resolves to {address}"
        for rule in self.deny:
            if (
                rule.kind is RuleKind.ADDRESS
                and rule.covers_host(address)
                and rule.covers_port(port, portless=None)
            ):
                return Refused(
                    str(destination),
                    RefusalKind.DENIED,
                    f"resolves to an address in {DENY_SETTING}",
                    detail=f"{resolved}, denied by {DENY_SETTING} entry {rule.entry!r}",
                )
        kind = special_kind(address)
        if kind is None or self._lists_address(address, port):
            return None
        # The class without the address an IPv6 form embeds (the sandbox sees this).
        shown_kind = kind.split(": embeds ", 1)[0]
        if is_metadata(address):
            return Refused(
                str(destination),
                RefusalKind.BLOCKED_ADDRESS,
                f"resolves to a special address ({shown_kind}); only an {ALLOW_SETTING} entry"
                " naming that address allows it",
                detail=f"{resolved} ({kind})",
            )
        if self._lists_name_and_port(destination):
            return None
        # An allowed IP destination is listed itself: only names get here.
        return Refused(
            str(destination),
            RefusalKind.BLOCKED_ADDRESS,
            f"resolves to a special address ({shown_kind}); list {str(destination)!r} (the name"
            f" with its port) in {ALLOW_SETTING} to allow it",
            detail=f"{resolved} ({kind})",
        )

    def _lists_address(self, address: IPAddress, port: int) -> bool:
        return any(
            rule.kind is RuleKind.ADDRESS
            and rule.covers_host(address)
            and rule.covers_port(port, portless=DEFAULT_PORTS)
            for rule in self.allow
        )

    def _lists_name_and_port(self, destination: Destination) -> bool:
        """An exact name with an explicit port: the user means this one service, wherever it is."""
        return any(
            rule.kind is RuleKind.NAME
            and rule.host == destination.host
            and rule.port is not None
            and rule.port == destination.port
            for rule in self.allow
        )
