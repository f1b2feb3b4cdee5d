"""Resolution on the host and the vetting of every resolved address (DNS rebinding)."""

from __future__ import annotations

import ipaddress

import pytest

from tests.egress.egress_harness import map_resolver
from trio_sandbox.egress import (
    Allowed,
    EgressPolicy,
    IPAddress,
    RefusalKind,
    Refused,
    Route,
    find_route,
    system_resolver,
)
from trio_sandbox.egress._addresses import is_metadata, special_kind


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.9.9.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private (RFC 1918)"),
        ("172.16.0.1", "private (RFC 1918)"),
        ("172.31.255.255", "private (RFC 1918)"),
        ("192.168.1.1", "private (RFC 1918)"),
        ("100.64.0.1", "carrier-grade NAT (RFC 6598)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique local (private)"),
        ("fd12:3456::1", "unique local (private)"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "reserved"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("::ffff:127.0.0.1", "loopback: embeds 127.0.0.1"),
        ("::ffff:169.254.169.254", "cloud metadata: embeds 169.254.169.254"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata: embeds 169.254.169.254"),
        ("2002:7f00:1::", "loopback: embeds 127.0.0.1"),
        ("192.0.2.1", "reserved (not globally routable)"),
        ("2001:db8::1", "reserved (not globally routable)"),
        ("8.8.8.8", None),
        ("151.101.0.223", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_address_classes(address: str, kind: str | None) -> None:
    assert special_kind(ip(address)) == kind
    assert is_metadata(ip(address)) == (kind is not None and kind.startswith("cloud metadata"))


def allowed(policy: EgressPolicy, host: str, port: int) -> Allowed:
    decision = policy.decide(host, port)
    assert isinstance(decision, Allowed), decision
    return decision


RESOLVER = map_resolver(
    {
        "pypi.org": [ip("151.101.0.223"), ip("2a04:4e42::223")],
        "rebound.example.com": [ip("127.0.0.1")],
        "mixed.example.com": [ip("151.101.0.223"), ip("10.0.0.7")],
        "metadata.example.com": [ip("169.254.169.254")],
        "mapped.example.com": [ip("::ffff:127.0.0.1")],
        "lan.example.com": [ip("192.168.1.20")],
        "internal.corp": [ip("10.20.30.40")],
        "empty.example.com": [],
    }
)
POLICY = EgressPolicy.parse(
    allow=[
        "pypi.org",
        "*.example.com",
        "metadata.example.com:80",
        "internal.corp:8443",
        "192.168.1.20",
    ],
    deny=["10.0.0.0", "151.101.0.224"],
)


async def route(host: str, port: int = 443, policy: EgressPolicy = POLICY) -> Route | Refused:
    return await find_route(policy, allowed(policy, host, port), RESOLVER)


async def test_an_allowed_public_name_gets_every_address_it_resolved_to() -> None:
    found = await route("pypi.org")
    assert isinstance(found, Route)
    assert found.addresses == (ip("151.101.0.223"), ip("2a04:4e42::223"))


async def test_a_rebound_name_is_refused_naming_the_class_and_what_would_allow_it() -> None:
    """The reason goes to the sandbox: it names the address's class, not the address; the host's
    log gets the address in ``detail``."""
    refused = await route("rebound.example.com", 443)
    assert refused == Refused(
        "rebound.example.com:443",
        RefusalKind.BLOCKED_ADDRESS,
        "resolves to a special address (loopback); list 'rebound.example.com:443' (the name with"
        " its port) in allow_domains to allow it",
        detail="resolves to 127.0.0.1 (loopback)",
    )
    mapped = await route("mapped.example.com", 80)
    assert isinstance(mapped, Refused)
    assert mapped.reason.startswith("resolves to a special address (loopback);")
    assert mapped.detail == "resolves to ::ffff:7f00:1 (loopback: embeds 127.0.0.1)"


async def test_one_bad_address_among_good_ones_refuses_the_destination() -> None:
    refused = await route("mixed.example.com")
    assert isinstance(refused, Refused)
    assert refused.kind is RefusalKind.BLOCKED_ADDRESS
    assert "(private (RFC 1918))" in refused.reason
    assert refused.detail == "resolves to 10.0.0.7 (private (RFC 1918))"


async def test_metadata_is_refused_even_for_an_exact_name_and_port() -> None:
    refused = await route("metadata.example.com", 80)
    assert refused == Refused(
        "metadata.example.com:80",
        RefusalKind.BLOCKED_ADDRESS,
        "resolves to a special address (cloud metadata); only an allow_domains entry naming that"
        " address allows it",
        detail="resolves to 169.254.169.254 (cloud metadata)",
    )
    listed = EgressPolicy.parse(["metadata.example.com:80", "169.254.169.254:80"])
    found = await route("metadata.example.com", 80, listed)
    assert isinstance(found, Route)


async def test_an_exact_name_with_its_port_may_reach_a_private_address() -> None:
    found = await route("internal.corp", 8443)
    assert isinstance(found, Route)
    assert found.addresses == (ip("10.20.30.40"),)


async def test_an_exact_listed_address_may_be_private() -> None:
    found = await route("lan.example.com", 443)
    assert isinstance(found, Route)


async def test_a_resolved_address_on_the_deny_list_is_denied() -> None:
    policy = EgressPolicy.parse(allow=["pypi.org"], deny=["2a04:4e42::223"])
    refused = await route("pypi.org", 443, policy)
    assert refused == Refused(
        "pypi.org:443",
        RefusalKind.DENIED,
        "resolves to an address in deny_domains",
        detail="resolves to 2a04:4e42::223, denied by deny_domains entry '2a04:4e42::223'",
    )


async def test_resolution_failures_are_refusals_of_their_own_kind() -> None:
    unknown = await route("nowhere.example.com")
    assert unknown == Refused(
        "nowhere.example.com:443",
        RefusalKind.UNRESOLVABLE,
        "cannot resolve nowhere.example.com: Name or service not known",
    )
    empty = await route("empty.example.com")
    assert isinstance(empty, Refused)
    assert empty.reason == "empty.example.com has no address"


async def test_an_ip_destination_is_not_resolved() -> None:
    policy = EgressPolicy.parse(["127.0.0.2:8080"])
    found = await find_route(policy, allowed(policy, "127.0.0.2", 8080), map_resolver({}))
    assert isinstance(found, Route)
    assert found.addresses == (ip("127.0.0.2"),)


async def test_the_system_resolver_resolves_localhost_on_the_host() -> None:
    addresses = await system_resolver("localhost")
    assert addresses
    assert all(address.is_loopback for address in addresses)
    assert len(set(addresses)) == len(addresses)
