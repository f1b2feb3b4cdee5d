"""Which resolved addresses the proxy refuses to dial unless a rule names them.

A name on the allow list may resolve to anything its DNS says, including the host's own loopback,
the LAN, or a cloud metadata service (DNS rebinding). Every resolved address is classified here;
an address with a class is dialed only when the policy lists it (see ``EgressPolicy``).
IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4) are classified by that address.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from ._names import IPAddress

METADATA: Final = "cloud metadata"
# Instance metadata and credential endpoints of the common clouds (AWS, GCP, Azure, Oracle,
# DigitalOcean: 169.254.169.254; AWS ECS task credentials 169.254.170.2; AWS IMDS over IPv6
# fd00:ec2::254; Alibaba 100.100.100.200; Tencent 169.254.0.23).
METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(text)
    for text in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.0.23",
        "100.100.100.200",
        "fd00:ec2::254",
    )
)

_NETWORKS: Final[tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]] = tuple(
    (ipaddress.ip_network(network), kind)
    for network, kind in (
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("100.64.0.0/10", "carrier-grade NAT (RFC 6598)"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fc00::/7", "unique local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 or 6to4 IPv6 address leads to."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def is_metadata(address: IPAddress) -> bool:
    """Whether ``address`` (or the IPv4 address it embeds) is a cloud metadata endpoint."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            return inner in METADATA_ADDRESSES
    return address in METADATA_ADDRESSES


def special_kind(address: IPAddress) -> str | None:
    """Why ``address`` is not an ordinary public destination (e.g. ``"loopback"``), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            kind = special_kind(inner)
            return None if kind is None else f"{kind}: embeds {inner}"
    if address in METADATA_ADDRESSES:
        return METADATA
    for network, kind in _NETWORKS:
        if address.version == network.version and address in network:
            return kind
    # Documentation, benchmarking and other IANA special-purpose ranges.
    return None if address.is_global else "reserved (not globally routable)"
