"""The per-sandbox interception CA of inject_secrets, and the two TLS ends of an intercepted
connection.

The host makes one :class:`InterceptionAuthority` per warden run, limited by a *critical*
NameConstraints extension to the hosts a secret is injected for: even its leaked key vouches
for nothing else (a name type with no entry is closed: DNS permits only ``invalid``, every IP
is excluded). The certificate and key travel to the warden in the injection descriptor (never
a file); the warden mints one leaf per intercepted host on demand (DNS or IP SAN, 7 days) and
serves it with ALPN ``http/1.1``. :func:`upstream_context` is the re-originated side: the
system's trust store (``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured) and ALPN ``http/1.1``.
The sandbox trusts the CA through ``combined_bundle`` (from the contract: the warden makes the
bundle before it imports this package): its system bundle plus the CA.
"""

from __future__ import annotations

import collections
import datetime
import ipaddress
import ssl
import threading
from collections.abc import Callable, Iterable

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..egress import INJECT_SETTING, DestinationRule, PolicyError, RuleKind
from ._errors import InterceptionAuthorityError, InterceptionScopeError
from ._identity import HTTP_ALPN_PROTOCOLS
from ._key_loading import load_leaf_into_context
from ._x509 import CLOCK_SKEW_ALLOWANCE, LeafRole, certificate_pem, sign_ca, sign_leaf, utc_now

INTERCEPTION_CA_COMMON_NAME = "trio-sandbox egress interception CA"
CA_LIFETIME = datetime.timedelta(days=365)
LEAF_LIFETIME = datetime.timedelta(days=7)
# A cached leaf with less than this left is minted again.
LEAF_RENEWAL = datetime.timedelta(days=1)
LEAF_CACHE_SIZE = 256
# What a DNS name constraint permits when the scope names no host: the reserved TLD.
_CLOSED_DNS = "invalid"
_ALL_ADDRESSES = (ipaddress.IPv4Network("0.0.0.0/0"), ipaddress.IPv6Network("::/0"))

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@attrs.frozen
class InterceptionScope:
    """The hosts an interception CA may vouch for: exact names, wildcard bases (``*.base``
    covers the names under ``base``) and addresses. Names are lower case, without a dot at
    either end."""

    names: frozenset[str] = frozenset()
    wildcards: frozenset[str] = frozenset()
    addresses: frozenset[Address] = frozenset()

    @classmethod
    def parse(cls, hosts: Iterable[str]) -> InterceptionScope:
        """From inject_secrets' hosts as allow_domains writes them: ``api.github.com``,
        ``*.example.com``, ``127.0.0.2``, ``[::1]``, ``::1``, each with an optional ``:PORT``,
        which a certificate cannot say (ignored: the egress layer checks ports)."""
        names: set[str] = set()
        wildcards: set[str] = set()
        addresses: set[Address] = set()
        for entry in hosts:
            host = _normalised(entry.strip())
            address = _address(host)
            if address is not None:
                addresses.add(address)
                continue
            name = _dns_name(host.removeprefix("*."), host)
            (wildcards if host.startswith("*.") else names).add(name)
        if not (names or wildcards or addresses):
            raise InterceptionScopeError("an interception scope needs at least one host")
        return cls(frozenset(names), frozenset(wildcards), frozenset(addresses))

    def covers(self, host: str) -> bool:
        address = _address(host)
        if address is not None:
            return address in self.addresses
        name = host.lower().rstrip(".")
        return name in self.names or any(name.endswith("." + base) for base in self.wildcards)

    def name_constraints(self) -> x509.NameConstraints:
        permitted: list[x509.GeneralName] = [
            x509.DNSName(name) for name in sorted(self.names | self.wildcards)
        ]
        permitted += [
            x509.IPAddress(ipaddress.ip_network(address))
            for address in sorted(self.addresses, key=lambda item: (item.version, item))
        ]
        excluded: list[x509.GeneralName] = []
        if not (self.names or self.wildcards):
            permitted.insert(0, x509.DNSName(_CLOSED_DNS))
        if not self.addresses:
            excluded = [x509.IPAddress(network) for network in _ALL_ADDRESSES]
        return x509.NameConstraints(
            permitted_subtrees=permitted, excluded_subtrees=excluded or None
        )

    def check_certificate(self, certificate: x509.Certificate) -> None:
        """InterceptionAuthorityError unless ``certificate`` is limited, critically, to
        exactly this scope."""
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.NameConstraints)
        except x509.ExtensionNotFound:
            raise InterceptionAuthorityError(
                "the interception CA has no NameConstraints: it would vouch for any host"
            ) from None
        if not constraints.critical:
            raise InterceptionAuthorityError(
                "the interception CA's NameConstraints are not critical"
            )
        if constraints.value != self.name_constraints():
            raise InterceptionAuthorityError(
                "the interception CA's NameConstraints are not the inject_secrets hosts"
            )


def _normalised(entry: str) -> str:
    """The host of ``entry`` as the egress policy reads it (an international name in its
    xn-- form, lower case, no trailing dot), so that the CA covers every host the egress layer
    intercepts; as written (checked below) if the policy does not read it."""
    try:
        rule = DestinationRule.parse(entry, INJECT_SETTING)
    except PolicyError:
        return _without_port(entry)
    host = rule.host if isinstance(rule.host, str) else str(rule.host)
    return f"*.{host}" if rule.kind is RuleKind.WILDCARD else host


def _without_port(entry: str) -> str:
    """The host of ``HOST[:PORT]``, ``[IPV6][:PORT]`` or a bare IPv6 address."""
    if entry.startswith("["):
        return entry[1 : entry.find("]")] if "]" in entry else entry
    if entry.count(":") == 1:
        return entry.partition(":")[0]
    return entry


def _address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def _dns_name(name: str, host: str) -> str:
    name = name.lower().rstrip(".")
    labels = name.split(".")
    if not name or any(not label or len(label) > 63 for label in labels) or len(name) > 253:
        raise InterceptionScopeError(f"{host!r} is not a host name")
    if not name.isascii() or any(
        not (char.isalnum() or char in "-_") for label in labels for char in label
    ):
        raise InterceptionScopeError(f"{host!r} is not a host name (IDNA A-labels only)")
    return name


@attrs.frozen(eq=False)
class InterceptionAuthority:
    """A CA that signs leaves for the hosts of its scope only (its private key is never in a
    repr, and reaches the warden in memory only)."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey = attrs.field(repr=False)
    scope: InterceptionScope

    @classmethod
    def generate(
        cls, scope: Iterable[str] | InterceptionScope, *, now: datetime.datetime | None = None
    ) -> InterceptionAuthority:
        """A fresh CA (ECDSA P-256, one year) limited to ``scope``: hosts without ``:PORT``."""
        chosen = scope if isinstance(scope, InterceptionScope) else InterceptionScope.parse(scope)
        now = utc_now() if now is None else now
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = sign_ca(
            ca_key=key,
            common_name=INTERCEPTION_CA_COMMON_NAME,
            not_valid_before=now - CLOCK_SKEW_ALLOWANCE,
            not_valid_after=now + CA_LIFETIME,
            name_constraints=chosen.name_constraints(),
        )
        return cls(certificate, key, chosen)

    def certificate_pem(self) -> str:
        return certificate_pem(self.certificate)

    def to_pem(self) -> tuple[str, str]:
        """(certificate, private key) in PEM, the key unencrypted PKCS#8: for the injection
        descriptor only (a sealed memfd), never a file."""
        key = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        return self.certificate_pem(), key

    @classmethod
    def from_pem(
        cls, certificate_pem: str, key_pem: str, scope: Iterable[str] | InterceptionScope
    ) -> InterceptionAuthority:
        """The CA :meth:`to_pem` wrote for ``scope``; InterceptionAuthorityError (never quoting
        the key) if either part cannot be read, the key is not the certificate's, or the
        certificate is not limited to exactly ``scope``."""
        chosen = scope if isinstance(scope, InterceptionScope) else InterceptionScope.parse(scope)
        try:
            certificate = x509.load_pem_x509_certificate(certificate_pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise InterceptionAuthorityError(
                "the interception CA's certificate is not a PEM X.509 certificate"
            ) from None
        try:
            key = serialization.load_pem_private_key(key_pem.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError):
            raise InterceptionAuthorityError(
                "the interception CA's key is not an unencrypted PEM private key"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InterceptionAuthorityError("the interception CA's key is not an EC key")
        if key.public_key() != certificate.public_key():
            raise InterceptionAuthorityError("the interception CA's key is not its certificate's")
        chosen.check_certificate(certificate)
        return cls(certificate, key, chosen)

    def issue_leaf(
        self, host: str, *, now: datetime.datetime | None = None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A server leaf for ``host`` (a DNS name, or an IP SAN for an address), valid 7
        days; InterceptionScopeError for a host outside the scope."""
        if not self.scope.covers(host):
            raise InterceptionScopeError(
                f"{host!r} is outside the interception CA's scope (the inject_secrets hosts)"
            )
        address = _address(host)
        san = str(address) if address is not None else host.lower().rstrip(".")
        now = utc_now() if now is None else now
        return sign_leaf(
            ca_key=self.private_key,
            ca_certificate=self.certificate,
            role=LeafRole.SERVER,
            # No common name: GnuTLS (git, and every libcurl-gnutls client) checks a server
            # leaf's CN as a DNS name against the CA's name constraints when the leaf has no DNS
            # name (an IP leaf), and the scope permits no DNS name then; OpenSSL does when the CN
            # looks like a host name. Clients match the subject alternative name only.
            common_name=None,
            hostnames=(san,),
            not_valid_before=now - CLOCK_SKEW_ALLOWANCE,
            not_valid_after=now + LEAF_LIFETIME,
        )

    def server_context(self, host: str, *, now: datetime.datetime | None = None) -> ssl.SSLContext:
        """A server-side context presenting a fresh leaf for ``host`` (TLS 1.2 or later, ALPN
        ``http/1.1`` only)."""
        certificate, key = self.issue_leaf(host, now=now)
        return _server_context(certificate, key)


def _server_context(
    certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(list(HTTP_ALPN_PROTOCOLS))
    load_leaf_into_context(context, certificate, key)
    return context


@attrs.frozen(eq=False)
class _CachedLeaf:
    context: ssl.SSLContext
    not_valid_after: datetime.datetime


@attrs.define(eq=False)
class LeafContexts:
    """Server contexts per host, minted on demand by ``authority`` and kept for the
    ``capacity`` most recently used hosts (wildcards make the set open); a leaf with less
    than a day left is minted again. Thread-safe: the warden mints in worker threads."""

    authority: InterceptionAuthority
    capacity: int = LEAF_CACHE_SIZE
    clock: Callable[[], datetime.datetime] = utc_now
    _cache: collections.OrderedDict[str, _CachedLeaf] = attrs.field(
        init=False, factory=collections.OrderedDict
    )
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    minted: int = attrs.field(init=False, default=0)

    def cached(self, host: str) -> ssl.SSLContext | None:
        """The context for ``host`` if one is kept that need not be minted again."""
        with self._lock:
            cached = self._cache.get(host.lower().rstrip("."))
        if cached is None or cached.not_valid_after - self.clock() <= LEAF_RENEWAL:
            return None
        return cached.context

    def context(self, host: str) -> ssl.SSLContext:
        key = host.lower().rstrip(".")
        now = self.clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached.not_valid_after - now > LEAF_RENEWAL:
                self._cache.move_to_end(key)
                return cached.context
        certificate, private_key = self.authority.issue_leaf(host, now=now)
        context = _server_context(certificate, private_key)
        with self._lock:
            self.minted += 1
            self._cache[key] = _CachedLeaf(context, certificate.not_valid_after_utc)
            self._cache.move_to_end(key)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return context

    def __len__(self) -> int:
        return len(self._cache)


def upstream_context() -> ssl.SSLContext:
    """The client side towards the real host: the system's trust store as OpenSSL finds it
    (``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` honoured), hostname checks, TLS 1.2 or later and
    ALPN ``http/1.1``, as an HTTP/1.1 client offers it."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(list(HTTP_ALPN_PROTOCOLS))
    return context
