"""The interception CA of inject_secrets: real TLS handshakes on 127.0.0.1 between a verifying
client that trusts it and a server presenting its leaves; what its name constraints refuse
(a leaf for any other host, signed with its own key, fails OpenSSL's verification); its key
hygiene, PEM round trip, leaf cache and re-minting; the upstream context's trust store."""

from __future__ import annotations

import datetime
import ipaddress
import os
import pathlib
import shutil
import ssl
import sys
from functools import partial

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trio_sandbox.tls import (
    INTERCEPTION_CA_COMMON_NAME,
    InterceptionAuthority,
    InterceptionAuthorityError,
    InterceptionScope,
    InterceptionScopeError,
    LeafContexts,
    MtlsIdentity,
    combined_bundle,
    upstream_context,
)
from trio_sandbox.tls._key_loading import load_leaf_into_context
from trio_sandbox.tls._x509 import LeafRole, sign_ca, sign_leaf

SslStream = trio.SSLStream[trio.SocketStream]
SCOPE = ("api.github.test", "*.uploads.test", "127.0.0.1")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _client_trusting(ca_pem: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem)
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


async def _handshake(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, server_hostname: str
) -> tuple[str | None, str | None]:
    """One handshake on 127.0.0.1: the ALPN protocol the server chose and the TLS version, as
    the client saw them; the client's error propagates (both sides are closed either way)."""
    served = trio.Event()

    async def handle(stream: SslStream) -> None:
        try:
            await stream.do_handshake()
            await stream.send_all(b"ok")
        except trio.BrokenResourceError:
            pass
        finally:
            served.set()
            await trio.aclose_forcefully(stream)

    outcome: tuple[str | None, str | None] | trio.BrokenResourceError
    async with trio.open_nursery() as nursery:
        listeners: list[trio.SSLListener[trio.SocketStream]] = await nursery.start(
            partial(trio.serve_ssl_over_tcp, handle, 0, server_context, host="127.0.0.1")
        )
        transport = listeners[0].transport_listener
        assert isinstance(transport, trio.SocketListener)
        port = transport.socket.getsockname()[1]
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        client = trio.SSLStream(tcp, client_context, server_hostname=server_hostname)
        try:
            with trio.fail_after(10):
                await client.do_handshake()
                assert await client.receive_some() == b"ok"
                await served.wait()
            outcome = (client.selected_alpn_protocol(), client.version())
        except trio.BrokenResourceError as error:
            outcome = error
        finally:
            await trio.aclose_forcefully(client)
            nursery.cancel_scope.cancel()
    if isinstance(outcome, trio.BrokenResourceError):
        raise outcome
    return outcome


def _verification_error(error: pytest.ExceptionInfo[trio.BrokenResourceError]) -> str:
    cause = error.value.__cause__
    assert isinstance(cause, ssl.SSLCertVerificationError), cause
    return str(cause.verify_message)


# ---------------------------------------------------------------- the CA's shape


def test_the_ca_is_limited_critically_to_its_scope() -> None:
    authority = InterceptionAuthority.generate(SCOPE)
    certificate = authority.certificate
    assert certificate.subject.rfc4514_string().startswith(f"CN={INTERCEPTION_CA_COMMON_NAME}")
    basic = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca
    assert basic.value.path_length == 0
    constraints = certificate.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert constraints.value.permitted_subtrees == [
        x509.DNSName("api.github.test"),
        x509.DNSName("uploads.test"),
        x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")),
    ]
    assert constraints.value.excluded_subtrees is None
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert datetime.timedelta(days=365) <= lifetime <= datetime.timedelta(days=366)


def test_a_name_type_without_entries_is_closed() -> None:
    names_only = InterceptionAuthority.generate(["api.github.test"]).certificate
    value = names_only.extensions.get_extension_for_class(x509.NameConstraints).value
    assert value.excluded_subtrees == [
        x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
        x509.IPAddress(ipaddress.ip_network("::/0")),
    ]
    addresses_only = InterceptionAuthority.generate(["127.0.0.2", "[::1]"]).certificate
    value = addresses_only.extensions.get_extension_for_class(x509.NameConstraints).value
    assert value.permitted_subtrees == [
        x509.DNSName("invalid"),
        x509.IPAddress(ipaddress.ip_network("127.0.0.2/32")),
        x509.IPAddress(ipaddress.ip_network("::1/128")),
    ]
    assert value.excluded_subtrees is None


@pytest.mark.parametrize("scope", [[], ["api github"], ["ápi te"], ["a..b"], ["*."]])
def test_a_bad_scope_is_refused(scope: list[str]) -> None:
    with pytest.raises(InterceptionScopeError):
        InterceptionAuthority.generate(scope)


def test_the_key_is_in_no_repr() -> None:
    authority = InterceptionAuthority.generate(SCOPE)
    _, key_pem = authority.to_pem()
    key_body = "".join(key_pem.splitlines()[1:-1])
    number = authority.private_key.private_numbers().private_value
    for text in (repr(authority), str(authority)):
        assert key_body[:40] not in text
        assert str(number) not in text
        assert "private_key" not in text


def test_pem_round_trip_signs_leaves_the_original_certificate_verifies() -> None:
    authority = InterceptionAuthority.generate(SCOPE)
    certificate_pem, key_pem = authority.to_pem()
    assert "ENCRYPTED" not in key_pem
    again = InterceptionAuthority.from_pem(certificate_pem, key_pem, SCOPE)
    assert again.certificate == authority.certificate
    assert again.scope == authority.scope
    leaf, _ = again.issue_leaf("api.github.test")
    leaf.verify_directly_issued_by(authority.certificate)


def _unconstrained(authority: InterceptionAuthority) -> str:
    certificate = sign_ca(
        ca_key=authority.private_key,
        common_name="no constraints",
        not_valid_before=_now() - datetime.timedelta(hours=1),
        not_valid_after=_now() + datetime.timedelta(days=1),
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def test_from_pem_refuses_without_quoting_the_key() -> None:
    authority = InterceptionAuthority.generate(SCOPE)
    other = InterceptionAuthority.generate(SCOPE)
    certificate_pem, key_pem = authority.to_pem()
    _, other_key = other.to_pem()
    broken_key = key_pem.replace("A", "B", 3)
    cases = [
        (certificate_pem, other_key, SCOPE, "not its certificate's"),
        (certificate_pem, broken_key, SCOPE, "not an unencrypted PEM private key"),
        ("garbage", key_pem, SCOPE, "not a PEM X.509 certificate"),
        (certificate_pem, key_pem, ("api.github.test",), "not the inject_secrets hosts"),
        (MtlsIdentity.generate_client().ca_cert_pem(), key_pem, SCOPE, "not its"),
        (_unconstrained(authority), key_pem, SCOPE, "no NameConstraints"),
    ]
    for certificate, key, scope, reason in cases:
        with pytest.raises(InterceptionAuthorityError) as caught:
            InterceptionAuthority.from_pem(certificate, key, scope)
        assert reason in str(caught.value)
        for line in (*key.splitlines()[1:-1], *broken_key.splitlines()[1:-1]):
            assert line not in str(caught.value)
        assert caught.value.__cause__ is None


# ---------------------------------------------------------------- real handshakes


@pytest.mark.parametrize(
    ("host", "san"),
    [
        ("api.github.test", x509.DNSName("api.github.test")),
        ("API.GitHub.test", x509.DNSName("api.github.test")),
        ("deep.under.uploads.test", x509.DNSName("deep.under.uploads.test")),
        ("127.0.0.1", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
    ],
)
async def test_a_leaf_in_scope_passes_a_verifying_client_with_http11(
    host: str, san: x509.GeneralName
) -> None:
    authority = InterceptionAuthority.generate(SCOPE)
    certificate, _ = authority.issue_leaf(host)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(names) == [san]
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime <= datetime.timedelta(days=7, hours=1)
    alpn, version = await _handshake(
        authority.server_context(host), _client_trusting(authority.certificate_pem()), host
    )
    # The client offered h2 first: the interception speaks HTTP/1.1 only.
    assert alpn == "http/1.1"
    assert version in ("TLSv1.2", "TLSv1.3")


GNUTLS_PROBE = """
import http.server, os, ssl, subprocess, sys, threading
from trio_sandbox.tls import InterceptionAuthority
host, ca_path = sys.argv[1:]
server = http.server.ThreadingHTTPServer((host, 0), http.server.SimpleHTTPRequestHandler)
authority = InterceptionAuthority.generate([f"{host}:{server.server_address[1]}"])
with open(ca_path, "w") as ca:
    ca.write(authority.certificate_pem())
server.socket = authority.server_context(host).wrap_socket(server.socket, server_side=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"https://{host}:{server.server_address[1]}/absent.git"
env = {**os.environ, "GIT_SSL_CAINFO": ca_path, "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}
found = subprocess.run(["git", "ls-remote", url], env=env, capture_output=True, text=True)
print(found.stderr, end="")
"""


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.parametrize("host", ["127.0.0.2"])
async def test_an_address_leaf_passes_gnutls_whose_cn_check_meets_the_dns_constraints(
    host: str, tmp_path: pathlib.Path
) -> None:
    """Debian's git speaks TLS through libcurl-gnutls, which checks a server leaf's common name
    as a DNS name against the CA's name constraints when the leaf has no DNS name: an IP leaf
    carrying any CN failed there (the scope permits no DNS name), so leaves have none."""
    authority = InterceptionAuthority.generate([host])
    certificate, _ = authority.issue_leaf(host)
    assert certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME) == []
    probe = [sys.executable, "-c", GNUTLS_PROBE, host, str(tmp_path / "ca.pem")]
    with trio.fail_after(60):
        found = await trio.run_process(probe, capture_stdout=True, check=True)
    # Past TLS: the server's 404, not "server certificate verification failed".
    assert b"not found" in found.stdout, found.stdout


def _outside_leaf_context(authority: InterceptionAuthority, host: str) -> ssl.SSLContext:
    """A leaf for ``host`` signed with the CA's own key, bypassing issue_leaf's scope check:
    what a leaked key could mint."""
    now = _now()
    certificate, key = sign_leaf(
        ca_key=authority.private_key,
        ca_certificate=authority.certificate,
        role=LeafRole.SERVER,
        common_name="outside",
        hostnames=(host,),
        not_valid_before=now - datetime.timedelta(hours=1),
        not_valid_after=now + datetime.timedelta(days=1),
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_leaf_into_context(context, certificate, key)
    return context


@pytest.mark.parametrize(
    ("scope", "host", "message"),
    [
        (SCOPE, "evil.test", "permitted subtree violation"),
        (SCOPE, "github.test", "permitted subtree violation"),
        (SCOPE, "uploads.test.evil.test", "permitted subtree violation"),
        (SCOPE, "127.0.0.2", "permitted subtree violation"),
        (("api.github.test",), "127.0.0.1", "excluded subtree violation"),
        (("127.0.0.1",), "localhost", "permitted subtree violation"),
    ],
)
async def test_a_leaf_outside_the_scope_fails_verification_by_name_constraints(
    scope: tuple[str, ...], host: str, message: str
) -> None:
    authority = InterceptionAuthority.generate(scope)
    with pytest.raises(trio.BrokenResourceError) as refused:
        await _handshake(
            _outside_leaf_context(authority, host),
            _client_trusting(authority.certificate_pem()),
            host,
        )
    assert message in _verification_error(refused)


@pytest.mark.parametrize(
    ("scope", "host"),
    [
        (SCOPE, "evil.test"),
        (SCOPE, "uploads.test"),  # a wildcard covers the names under its base only
        (SCOPE, "sub.api.github.test"),
        (SCOPE, "127.0.0.2"),
        (("api.github.test",), "127.0.0.1"),  # no IP leaf without an IP entry
        (("127.0.0.1",), "::1"),
    ],
)
def test_no_leaf_is_issued_outside_the_scope(scope: tuple[str, ...], host: str) -> None:
    authority = InterceptionAuthority.generate(scope)
    with pytest.raises(InterceptionScopeError, match="outside the interception CA's scope"):
        authority.server_context(host)


async def test_a_client_trusting_only_the_system_store_refuses_the_leaf() -> None:
    authority = InterceptionAuthority.generate(SCOPE)
    context = ssl.create_default_context()
    with pytest.raises(trio.BrokenResourceError) as refused:
        await _handshake(authority.server_context("api.github.test"), context, "api.github.test")
    assert "unable to get local issuer certificate" in _verification_error(refused)


# ---------------------------------------------------------------- the leaf cache


def test_leaves_are_cached_per_host_reminted_near_expiry_and_bounded() -> None:
    authority = InterceptionAuthority.generate(SCOPE)
    clock = [_now()]
    leaves = LeafContexts(authority, capacity=2, clock=lambda: clock[0])
    first = leaves.context("api.github.test")
    assert leaves.context("API.github.test.") is first
    assert leaves.minted == 1
    clock[0] += datetime.timedelta(days=5, hours=23)  # more than a day left
    assert leaves.context("api.github.test") is first
    clock[0] += datetime.timedelta(hours=2)  # less than a day left: a new leaf
    assert leaves.cached("api.github.test") is None
    second = leaves.context("api.github.test")
    assert second is not first
    assert leaves.minted == 2
    assert leaves.cached("api.github.test") is second
    assert leaves.cached("a.uploads.test") is None  # never minted: cached() does not mint
    leaves.context("a.uploads.test")
    leaves.context("b.uploads.test")  # evicts api.github.test, the least recently used
    assert len(leaves) == 2
    assert leaves.context("api.github.test") is not second
    assert leaves.minted == 5
    with pytest.raises(InterceptionScopeError):
        leaves.context("evil.test")


# ---------------------------------------------------------------- upstream and the bundle


def _server_identity_context(identity: MtlsIdentity) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_alpn_protocols(["h2", "http/1.1"])
    load_leaf_into_context(context, identity.certificate, identity.leaf.private_key)
    return context


async def test_upstream_context_honours_ssl_cert_file_and_offers_http11(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = MtlsIdentity.generate_server(hostnames=("127.0.0.1",))
    with pytest.raises(trio.BrokenResourceError) as refused:
        await _handshake(_server_identity_context(origin), upstream_context(), "127.0.0.1")
    assert "unable to get local issuer certificate" in _verification_error(refused)

    bundle = tmp_path / "bundle.pem"
    bundle.write_text(origin.ca_cert_pem())
    monkeypatch.setenv("SSL_CERT_FILE", os.fspath(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    context = upstream_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    alpn, _ = await _handshake(_server_identity_context(origin), context, "127.0.0.1")
    assert alpn == "http/1.1"  # the origin prefers h2, but we never offer it
    with pytest.raises(trio.BrokenResourceError) as refused:
        await _handshake(_server_identity_context(origin), upstream_context(), "localhost")
    assert "mismatch" in _verification_error(refused) or "match" in _verification_error(refused)


async def test_a_client_of_the_combined_bundle_trusts_both(tmp_path: pathlib.Path) -> None:
    origin = MtlsIdentity.generate_server(hostnames=("127.0.0.1",))
    authority = InterceptionAuthority.generate(["api.github.test"])
    system = origin.ca_cert_pem().encode().rstrip(b"\n")  # no final newline: still joined
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(combined_bundle(system, authority.certificate_pem()))
    assert bundle.read_bytes().startswith(system + b"\n")
    loaded = x509.load_pem_x509_certificates(bundle.read_bytes())
    assert [certificate.subject for certificate in loaded] == [
        origin.ca_certificate.subject,
        authority.certificate.subject,
    ]
    context = ssl.create_default_context(cafile=os.fspath(bundle))
    await _handshake(_server_identity_context(origin), context, "127.0.0.1")
    await _handshake(authority.server_context("api.github.test"), context, "api.github.test")
    assert all(
        certificate.public_bytes(serialization.Encoding.PEM).decode() != authority.to_pem()[1]
        for certificate in loaded
    )
    assert b"PRIVATE KEY" not in bundle.read_bytes()


def test_a_scope_reads_international_names_as_the_egress_policy_does() -> None:
    """A host DestinationRule accepts (inject_secrets' hosts are allow rules) is covered by
    the CA in the form the egress layer asks for it: xn--, lower case, no trailing dot."""
    entries = ["bücher.de", "*.Bücher.test.:8443", "API.Example.test."]
    scope = InterceptionScope.parse(entries)
    assert scope.names == frozenset({"xn--bcher-kva.de", "api.example.test"})
    assert scope.wildcards == frozenset({"xn--bcher-kva.test"})
    authority = InterceptionAuthority.generate(entries)
    for host in ("xn--bcher-kva.de", "a.xn--bcher-kva.test", "api.example.test"):
        assert authority.scope.covers(host)
        authority.issue_leaf(host)


def test_scope_parse_and_covers() -> None:
    with_ports = InterceptionScope.parse(
        ["api.github.test:8443", "*.uploads.test:443", "127.0.0.1:9", "[::1]:443", "::2"]
    )
    assert with_ports == InterceptionScope(
        frozenset({"api.github.test"}),
        frozenset({"uploads.test"}),
        frozenset(ipaddress.ip_address(text) for text in ("127.0.0.1", "::1", "::2")),
    )
    scope = InterceptionScope.parse(SCOPE)
    assert scope.covers("api.github.test")
    assert scope.covers("x.uploads.test")
    assert scope.covers("127.0.0.1")
    assert scope.covers("[127.0.0.1]")
    assert not scope.covers("uploads.test")
    assert not scope.covers("127.0.0.2")


@pytest.mark.parametrize("host", ["127.0.0.2", "api.example.test"])
def test_a_leaf_has_no_common_name_for_gnutls_to_check_against_the_constraints(host: str) -> None:
    """GnuTLS (git, apt) checks a leaf's common name against the CA's DNS constraints when the
    leaf has no DNS SAN: an IP leaf with any common name fails there. The subject is empty and
    the SAN critical (RFC 5280 4.2.1.6)."""
    authority = InterceptionAuthority.generate([host])
    certificate, _ = authority.issue_leaf(host)
    assert len(certificate.subject) == 0
    assert certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
