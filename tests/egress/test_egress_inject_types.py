"""The value types of inject_secrets: what an InjectedSecret accepts, and that its value never
shows in a repr or an error."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

import pytest

from trio_sandbox.egress import Destination, InjectedSecret, Injection, InjectionError, _suffixes

VALUE = "ghp_R3alV4lue0fTheT0ken000000000000000"
PLACEHOLDER = "ghp_Pl4ceh0lderxxxxxxxxxxxxxxxxxxxxxxx"


def secret(
    name: str = "GITHUB_TOKEN",
    value: str = VALUE,
    placeholder: str = PLACEHOLDER,
    hosts: tuple[str, ...] = ("api.github.com",),
) -> InjectedSecret:
    return InjectedSecret(name, value, placeholder, hosts)


async def _no_context(*args: object) -> ssl.SSLContext:
    raise AssertionError("not called")


def test_the_value_is_in_no_repr() -> None:
    made = secret()
    injection = Injection((made,), _no_context, _no_context)
    assert VALUE not in repr(made)
    assert VALUE not in repr(injection)
    assert PLACEHOLDER in repr(made)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"name": "1BAD"}, "a name is a letter"),
        ({"hosts": ()}, "scoped to no host"),
        ({"hosts": ("https://api.github.com",)}, "not a URL"),
        ({"value": "short", "placeholder": "shor7"}, "at least 8"),
        ({"value": VALUE + " x", "placeholder": PLACEHOLDER + " x"}, "visible ASCII"),
        ({"placeholder": PLACEHOLDER[:-1]}, "as long as the value"),
        ({"placeholder": VALUE}, "the placeholder is the value"),
        ({"placeholder": "ghp-" + PLACEHOLDER[4:]}, "differ at position 3"),
        ({"placeholder": "ghpx" + PLACEHOLDER[4:]}, "differ at position 3"),
    ],
)
def test_a_secret_that_cannot_be_injected_is_refused_without_its_value(
    kwargs: dict[str, object], reason: str
) -> None:
    with pytest.raises(InjectionError) as caught:
        secret(**kwargs)  # type: ignore[arg-type]
    assert reason in str(caught.value)
    assert VALUE not in str(caught.value)
    assert "R3alV4lue" not in str(caught.value)


def test_two_secrets_must_differ_in_name_and_placeholder() -> None:
    with pytest.raises(InjectionError, match="given twice"):
        Injection((secret(), secret()), _no_context, _no_context)
    other = secret("OTHER", "x" * 8 + VALUE, "y" * 8 + PLACEHOLDER)
    with pytest.raises(InjectionError, match="contain one another"):
        Injection((secret(), other), _no_context, _no_context)


def test_scope_follows_allow_domains_and_intercepts_443_unless_a_port_is_given() -> None:
    named = secret(hosts=("api.github.com", "*.githubassets.com", "git.corp:8443"))
    address = secret("ADDRESS", "z" * 38, "q" * 38, ("127.0.0.2:9443",))
    injection = Injection((named, address), _no_context, _no_context)

    def names(host: str | ipaddress.IPv4Address, port: int) -> list[str]:
        return [s.name for s in injection.scoped(Destination(host, port))]

    assert names("api.github.com", 443) == ["GITHUB_TOKEN"]
    assert names("api.github.com", 80) == []
    assert names("github.githubassets.com", 443) == ["GITHUB_TOKEN"]
    assert names("githubassets.com", 443) == []
    assert names("git.corp", 8443) == ["GITHUB_TOKEN"]
    assert names("git.corp", 443) == []
    assert names(ipaddress.IPv4Address("127.0.0.2"), 9443) == ["ADDRESS"]
    assert names("www.github.com", 443) == []
    assert named.scope_text() == "api.github.com, *.githubassets.com, git.corp:8443"


@pytest.mark.parametrize(
    ("hosts", "refused_under"),
    [
        (["*.vercel.app"], "vercel.app"),
        (["*.github.io"], "github.io"),
        (["api.example.com", "*.team.github.io:443"], "github.io"),
        (["*.githubusercontent.com"], "githubusercontent.com"),
        (["*.github.com"], None),
        (["octo.github.io", "app.vercel.app"], None),  # exact names stay allowed
    ],
)
def test_a_wildcard_where_anyone_can_have_a_host_is_refused(
    hosts: list[str], refused_under: str | None
) -> None:
    def make() -> InjectedSecret:
        return InjectedSecret("T", "ghp_value12345", "ghp_plac12345x", hosts)

    if refused_under is None:
        make()
        return
    with pytest.raises(InjectionError, match=f"wildcard under {refused_under}, where anyone"):
        make()


def test_the_private_section_is_read_when_the_system_list_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_suffixes, "SYSTEM_LIST", tmp_path / "absent.dat")
    _suffixes.private_suffixes.cache_clear()
    try:
        assert _suffixes.private_suffixes().at_or_under("a.b.vercel.app") == "vercel.app"
        assert _suffixes.private_suffixes().at_or_under("github.com") is None
    finally:
        _suffixes.private_suffixes.cache_clear()
