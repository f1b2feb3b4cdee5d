"""The policy: parsing allow/deny entries, and the decision for a host and port."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.egress.egress_harness import result_or_error
from trio_sandbox.egress import (
    Allowed,
    DestinationRule,
    EgressPolicy,
    PolicyError,
    RefusalKind,
    Refused,
    RuleKind,
)
from trio_sandbox.egress._suffixes import FALLBACK_SUFFIXES, SuffixList, public_suffixes

HOST_CHARACTERS = "a host name has letters, digits, '-', '_' and '.' only"
LABEL_RULE = "1 to 63 characters, not starting or ending with '-'"
IDNA_DEVIATION = (
    "contains a character that IDNA 2003 and IDNA 2008 map differently (ß, ς, ZWJ, ZWNJ); "
    "write the name in its xn-- form"
)
POLICY = EgressPolicy.parse(
    allow=[
        "pypi.org",
        "files.pythonhosted.org",
        "*.example.com",
        "api.partner.io:8443",
        "127.0.0.2:8080",
        "[::1]:8443",
        "bücher.de",
    ],
    deny=["*.evil.example.com", "secret.example.com:443"],
)


def allowed_by(host: str, port: int) -> str:
    decision = POLICY.decide(host, port)
    assert isinstance(decision, Allowed), decision
    return decision.rule.entry


def refusal(host: str, port: int) -> Refused:
    decision = POLICY.decide(host, port)
    assert isinstance(decision, Refused), decision
    return decision


def test_exact_names_are_case_insensitive_and_ignore_a_trailing_dot() -> None:
    assert allowed_by("pypi.org", 443) == "pypi.org"
    assert allowed_by("PyPI.ORG.", 80) == "pypi.org"
    assert isinstance(POLICY.decide("pypi.org.evil.com", 443), Refused)
    assert isinstance(POLICY.decide("www.pypi.org", 443), Refused)


def test_a_name_without_a_port_covers_80_and_443_only() -> None:
    assert str(refusal("pypi.org", 8080)) == (
        "pypi.org:8080 (not in allow_domains; 'pypi.org' covers ports 80 and 443 only)"
    )
    assert allowed_by("api.partner.io", 8443) == "api.partner.io:8443"
    assert str(refusal("api.partner.io", 443)) == (
        "api.partner.io:443 (not in allow_domains; 'api.partner.io:8443' covers port 8443 only)"
    )


def test_a_wildcard_covers_subdomains_at_any_depth_but_not_the_apex() -> None:
    assert allowed_by("a.example.com", 443) == "*.example.com"
    assert allowed_by("a.b.c.example.com", 80) == "*.example.com"
    assert str(refusal("example.com", 443)) == (
        "example.com:443 (not in allow_domains; '*.example.com' covers subdomains only)"
    )
    assert str(refusal("notexample.com", 443)) == "notexample.com:443 (not in allow_domains)"


def test_deny_wins_and_a_portless_deny_entry_covers_every_port() -> None:
    assert str(refusal("x.evil.example.com", 443)) == (
        "x.evil.example.com:443 (denied by deny_domains entry '*.evil.example.com')"
    )
    assert refusal("x.evil.example.com", 12345).kind is RefusalKind.DENIED
    assert refusal("secret.example.com", 443).kind is RefusalKind.DENIED
    assert allowed_by("secret.example.com", 80) == "*.example.com"


def test_ip_literals_are_allowed_only_when_listed_themselves() -> None:
    assert allowed_by("127.0.0.2", 8080) == "127.0.0.2:8080"
    assert allowed_by("::1", 8443) == "[::1]:8443"
    assert allowed_by("[::1]", 8443) == "[::1]:8443"
    assert allowed_by("[0:0::1]", 8443) == "[::1]:8443"
    assert str(refusal("127.0.0.3", 8080)) == (
        "127.0.0.3:8080 (not in allow_domains; an IP address is allowed only by an entry naming it)"
    )
    # The IPv4-mapped form is another address to the rule: refused, never widened.
    assert refusal("::ffff:127.0.0.2", 8080).kind is RefusalKind.NOT_ALLOWED
    assert refusal("[::1]", 443).kind is RefusalKind.NOT_ALLOWED


def test_international_names_match_in_either_form() -> None:
    assert allowed_by("bücher.de", 443) == "bücher.de"
    assert allowed_by("xn--bcher-kva.de", 443) == "bücher.de"
    assert allowed_by("BÜCHER.de", 443) == "bücher.de"
    (rule,) = EgressPolicy.parse(["bücher.de"]).allow
    assert rule.host == "xn--bcher-kva.de"


def test_refusals_name_the_destination_and_the_setting() -> None:
    refused = refusal("pypi.example.org", 443)
    assert str(refused) == "pypi.example.org:443 (not in allow_domains)"
    assert refused.kind.value == "blocked-by-allowlist"
    assert refusal("x.evil.example.com", 1).kind.value == "blocked-by-denylist"


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("", "empty host name"),
        ("a b.com", f"bad character(s) ' ': {HOST_CHARACTERS}"),
        ("127.1", "reads as an IPv4 address in a non-standard form; write it as a.b.c.d"),
        ("0x7f000001", "reads as an IPv4 address in a non-standard form; write it as a.b.c.d"),
        ("a..b", "empty label (two dots in a row, or a leading dot)"),
        ("-a.com", f"bad label '-a' ({LABEL_RULE})"),
        ("fe80::1%eth0", "an IPv6 zone index ('%...') names a local interface"),
    ],
)
def test_a_destination_that_is_not_a_host_is_refused_as_such(host: str, reason: str) -> None:
    refused = refusal(host, 443)
    assert refused.kind is RefusalKind.BAD_DESTINATION
    assert refused.reason == reason


def test_port_zero_is_a_bad_destination() -> None:
    assert refusal("pypi.org", 0).kind is RefusalKind.BAD_DESTINATION


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("*", "'*' would allow every destination; list the domains"),
        ("*.com", "covers the whole top-level domain 'com'"),
        ("*.co.uk", "covers the public suffix 'co.uk' (every site registered under it)"),
        ("https://pypi.org", "write just the host, e.g. 'pypi.org' or 'pypi.org:8443', not a URL"),
        ("pypi.org/simple", "write just the host, e.g. 'pypi.org' or 'pypi.org:8443', not a URL"),
        ("user@pypi.org", "write just the host, e.g. 'pypi.org' or 'pypi.org:8443', not a URL"),
        ("", "empty entry"),
        ("   ", "empty entry"),
        (":443", "empty host name"),
        ("pypi.org:0", "bad port '0' (a number from 1 to 65535)"),
        ("pypi.org:65536", "bad port '65536' (a number from 1 to 65535)"),
        ("pypi.org:http", "bad port 'http' (a number from 1 to 65535)"),
        ("pypi.org:", "bad port '' (a number from 1 to 65535)"),
        ("pypi.org:٤٤٣", "bad port '٤٤٣' (a number from 1 to 65535)"),
        ("pypi!.org", f"bad character(s) '!': {HOST_CHARACTERS}"),
        ("*.*.example.com", "a wildcard is '*.' followed by a domain, e.g. '*.example.com'"),
        ("www*.example.com", "a wildcard is '*.' followed by a domain, e.g. '*.example.com'"),
        ("*.10.0.0.1", "a wildcard cannot cover IP addresses; list each one"),
        ("[127.0.0.1]:80", "only an IPv6 address is written in brackets"),
        ("[::1", "an IPv6 literal in brackets lacks its closing ']'"),
        ("::1:443x", "not a valid IPv6 address"),
        ("a" * 64 + ".com", f"bad label {'a' * 64!r} ({LABEL_RULE})"),
        ("straße.de", IDNA_DEVIATION),
    ],
)
def test_bad_entries_are_refused_with_the_entry_and_the_reason(entry: str, reason: str) -> None:
    with pytest.raises(PolicyError) as caught:
        EgressPolicy.parse(allow=["pypi.org", entry])
    assert caught.value.setting == "allow_domains"
    assert caught.value.entry == entry
    assert caught.value.reason == reason
    assert str(caught.value) == f"allow_domains entry {entry!r}: {reason}"


def test_a_bad_deny_entry_names_deny_domains_and_a_non_string_is_refused() -> None:
    with pytest.raises(PolicyError, match=r"^deny_domains entry '\*\.com': covers the whole"):
        EgressPolicy.parse(deny=["*.com"])
    with pytest.raises(PolicyError, match=r"^allow_domains entry 443: not a string$"):
        EgressPolicy.parse(allow=[443])


def test_rule_kinds() -> None:
    policy = EgressPolicy.parse(["pypi.org:8080", "*.example.com", "10.1.2.3", "::1", "[::2]:1"])
    assert [(rule.kind, rule.host, rule.port) for rule in policy.allow] == [
        (RuleKind.NAME, "pypi.org", 8080),
        (RuleKind.WILDCARD, "example.com", None),
        (RuleKind.ADDRESS, ipaddress.ip_address("10.1.2.3"), None),
        (RuleKind.ADDRESS, ipaddress.ip_address("::1"), None),
        (RuleKind.ADDRESS, ipaddress.ip_address("::2"), 1),
    ]


def test_wildcards_under_private_suffixes_are_rules() -> None:
    # githubusercontent.com is in the list's private section: one company's hosts.
    (rule,) = EgressPolicy.parse(["*.githubusercontent.com"]).allow
    assert rule.kind is RuleKind.WILDCARD


def test_public_suffix_list_rules_wildcards_and_exceptions() -> None:
    listed = SuffixList.parse(
        [
            "// ===BEGIN ICANN DOMAINS===",
            "uk",
            "co.uk",
            "*.ck",
            "!www.ck",
            "// ===END ICANN DOMAINS===",
            "// ===BEGIN PRIVATE DOMAINS===",
            "github.io",
            "// ===END PRIVATE DOMAINS===",
        ]
    )
    assert listed.is_public_suffix("co.uk")
    assert listed.is_public_suffix("anything.ck")
    assert not listed.is_public_suffix("www.ck")
    assert not listed.is_public_suffix("github.io")
    assert not listed.is_public_suffix("example.co.uk")
    # Whatever the machine has, the common suffixes are known.
    assert public_suffixes().is_public_suffix("co.uk")
    assert "co.uk" in FALLBACK_SUFFIXES


# --- properties ---------------------------------------------------------------------------------

LABEL = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
NAME = st.lists(LABEL, min_size=2, max_size=4).map(".".join)
# A name a wildcard may cover: not itself a public suffix (`*.mm` in the list makes `a0.mm` one;
# wildcards over public suffixes are refused, and tested, on their own).
SITE = NAME.filter(lambda name: not public_suffixes().is_public_suffix(name))
PORT = st.integers(min_value=1, max_value=65535)


def check_rule_or_policy_error(entry: str) -> None:
    rule = result_or_error(PolicyError, DestinationRule.parse, entry)
    if isinstance(rule, PolicyError):
        assert rule.entry == entry
        assert rule.reason
    else:
        assert rule.entry == entry.strip()


@given(st.text(max_size=80))
def test_any_text_is_a_rule_or_a_policy_error(entry: str) -> None:
    check_rule_or_policy_error(entry)


@given(st.text(alphabet="*.:[]/-_abcxyz0123456789ABC%@ \u00fc\u00df", max_size=30))
def test_rule_like_text_is_a_rule_or_a_policy_error(entry: str) -> None:
    check_rule_or_policy_error(entry)


@given(st.text(max_size=80), st.integers(min_value=-5, max_value=70000))
def test_any_destination_gets_a_decision(host: str, port: int) -> None:
    decision = POLICY.decide(host, port)
    assert isinstance(decision, Allowed | Refused)


@given(NAME, PORT)
def test_a_listed_name_and_port_is_allowed_in_any_case_with_or_without_a_dot(
    name: str, port: int
) -> None:
    policy = EgressPolicy.parse([f"{name}:{port}"])
    for asked in (name, name.upper(), name + "."):
        assert isinstance(policy.decide(asked, port), Allowed)
    assert isinstance(policy.decide(name, port % 65535 + 1), Refused)


@given(SITE, LABEL)
def test_a_wildcard_covers_every_subdomain_and_never_its_apex(base: str, label: str) -> None:
    policy = EgressPolicy.parse([f"*.{base}"])
    assert isinstance(policy.decide(f"{label}.{base}", 443), Allowed)
    assert isinstance(policy.decide(base, 443), Refused)
    assert isinstance(policy.decide(f"{label}{base}", 443), Refused)


@given(SITE, PORT)
def test_deny_always_wins(name: str, port: int) -> None:
    policy = EgressPolicy.parse(allow=[f"{name}:{port}", f"*.{name}"], deny=[name, f"*.{name}"])
    assert policy.decide(name, port) == Refused(
        f"{name}:{port}", RefusalKind.DENIED, f"denied by deny_domains entry {name!r}"
    )
    assert isinstance(policy.decide(f"www.{name}", 443), Refused)
