"""mTLS identities: certificate shape, real handshakes over 127.0.0.1, and key hygiene."""

from __future__ import annotations

import datetime
import errno
import ipaddress
import os
import pathlib
import ssl
import stat
import tempfile
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from trio_sandbox.tls import (
    CertificateChain,
    LeafRole,
    MtlsIdentity,
    load_client_ssl_context,
)
from trio_sandbox.tls._key_loading import load_leaf_into_context

# Real sockets and real handshakes: this bound only turns a hang into a visible failure.
HANG_GUARD_SECONDS = 10.0

SslStream = trio.SSLStream[trio.SocketStream]


def _days(n: float) -> datetime.timedelta:
    return datetime.timedelta(days=n)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# ---------------------------------------------------------------- a tiny greeting server


@attrs.frozen
class ServerSide:
    """What the server saw of one connection: its handshake error or the client's CN."""

    error: BaseException | None
    peer_common_name: str | None


@attrs.frozen
class GreetingServer:
    port: int
    outcomes: trio.MemoryReceiveChannel[ServerSide]


def _peer_common_name(stream: SslStream) -> str:
    peer: Any = stream.getpeercert()
    for rdn in peer["subject"]:
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    raise AssertionError(f"no commonName in {peer!r}")


async def start_greeting_server(
    nursery: trio.Nursery, server_context: ssl.SSLContext
) -> GreetingServer:
    """Serve on 127.0.0.1: greet an authenticated client by name, echo one chunk upper-cased."""
    send_outcome, receive_outcome = trio.open_memory_channel[ServerSide](16)

    async def handle(stream: SslStream) -> None:
        try:
            try:
                await stream.do_handshake()
            except trio.BrokenResourceError as error:
                await send_outcome.send(ServerSide(error=error.__cause__, peer_common_name=None))
                return
            name = _peer_common_name(stream)
            await send_outcome.send(ServerSide(error=None, peer_common_name=name))
            await stream.send_all(f"hello {name}\n".encode())
            await stream.send_all((await stream.receive_some()).upper())
        finally:
            await trio.aclose_forcefully(stream)

    listeners: list[trio.SSLListener[trio.SocketStream]] = await nursery.start(
        partial(trio.serve_ssl_over_tcp, handle, 0, server_context, host="127.0.0.1")
    )
    transport = listeners[0].transport_listener
    assert isinstance(transport, trio.SocketListener)
    port: int = transport.socket.getsockname()[1]
    return GreetingServer(port=port, outcomes=receive_outcome)


async def connect(
    port: int, client_context: ssl.SSLContext, *, server_hostname: str = "127.0.0.1"
) -> SslStream:
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    return trio.SSLStream(tcp, client_context, server_hostname=server_hostname)


def _no_certificate_context(trusted_server_ca_pem: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=trusted_server_ca_pem)
    return context


def _limit_to(context: ssl.SSLContext, version: ssl.TLSVersion) -> ssl.SSLContext:
    context.maximum_version = version
    return context


async def client_observed_refusal(
    port: int, client_context: ssl.SSLContext, version: ssl.TLSVersion
) -> BaseException | None:
    """Connect and read; return the SSL error behind the refusal, as the client sees it.

    With TLS 1.2 the server's verdict on the client certificate arrives inside the
    handshake. With TLS 1.3 the client finishes its side of the handshake before the
    server has looked at the certificate, so the refusal shows up on the first read.
    """
    stream = await connect(port, _limit_to(client_context, version))
    try:
        if version is ssl.TLSVersion.TLSv1_3:
            await stream.do_handshake()  # must succeed: refusal comes later
            with pytest.raises(trio.BrokenResourceError) as refused:
                await stream.receive_some()
        else:
            with pytest.raises(trio.BrokenResourceError) as refused:
                await stream.do_handshake()
    finally:
        await trio.aclose_forcefully(stream)
    return refused.value.__cause__


BOTH_TLS_VERSIONS = pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"]
)


# ---------------------------------------------------------------- certificate shape


def test_client_identity_certificates_have_the_contract_shape() -> None:
    identity = MtlsIdentity.generate_client(common_name="host-under-test")
    ca, leaf = identity.ca_certificate, identity.certificate

    assert identity.role is LeafRole.CLIENT
    for certificate in (ca, leaf):
        public_key = certificate.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        assert public_key.curve.name == "secp256r1"

    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    ca_usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ca_usage.key_cert_sign
    assert ca_usage.crl_sign

    assert leaf.issuer == ca.subject
    leaf.verify_directly_issued_by(ca)
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usages = list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert usages == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert "CN=host-under-test" in leaf.subject.rfc4514_string()


def test_server_identity_has_dns_and_ip_subject_alternative_names() -> None:
    identity = MtlsIdentity.generate_server()
    leaf = identity.certificate
    usages = list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert usages == [ExtendedKeyUsageOID.SERVER_AUTH]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_validity_can_be_set_and_the_ca_outlives_the_leaf() -> None:
    not_before, not_after = _now() - _days(3), _now() - _days(1)
    identity = MtlsIdentity.generate_client(not_valid_before=not_before, not_valid_after=not_after)
    assert identity.certificate.not_valid_after_utc == not_after.replace(microsecond=0)
    assert identity.ca_certificate.not_valid_before_utc <= not_before
    assert identity.ca_certificate.not_valid_after_utc > _now()
    with pytest.raises(ValueError, match="later than"):
        MtlsIdentity.generate_client(not_valid_before=not_after, not_valid_after=not_before)


def test_each_identity_gets_its_own_ca() -> None:
    first, second = MtlsIdentity.generate_client(), MtlsIdentity.generate_client()
    assert first.ca_cert_pem() != second.ca_cert_pem()


def test_contexts_refuse_the_wrong_role() -> None:
    client, server = MtlsIdentity.generate_client(), MtlsIdentity.generate_server()
    with pytest.raises(ValueError, match="client certificate"):
        client.server_ssl_context(server.ca_cert_pem())
    with pytest.raises(ValueError, match="server certificate"):
        server.client_ssl_context(client.ca_cert_pem())


def test_trusted_ca_must_be_a_ca_certificate() -> None:
    client, server = MtlsIdentity.generate_client(), MtlsIdentity.generate_server()
    with pytest.raises(ValueError, match=r"not a PEM X\.509 certificate"):
        server.server_ssl_context("not a certificate")
    leaf_pem = client.certificate.public_bytes(Encoding.PEM).decode("ascii")
    with pytest.raises(ValueError, match="not a CA"):
        server.server_ssl_context(leaf_pem)


def test_contexts_require_verification_and_tls_1_2() -> None:
    client, server = MtlsIdentity.generate_client(), MtlsIdentity.generate_server()
    server_context = server.server_ssl_context(client.ca_cert_pem())
    client_context = client.client_ssl_context(server.ca_cert_pem())
    for context in (server_context, client_context):
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.minimum_version is ssl.TLSVersion.TLSv1_2
        # Exactly one trust anchor: the CA we were given, no system store.
        assert context.cert_store_stats()["x509_ca"] == 1
    assert client_context.check_hostname


# ---------------------------------------------------------------- key hygiene


def test_no_private_key_in_ca_pems_or_reprs() -> None:
    client, server = MtlsIdentity.generate_client(), MtlsIdentity.generate_server()
    chain = CertificateChain.generate()
    texts = [
        client.ca_cert_pem(),
        server.ca_cert_pem(),
        chain.ca_cert_pem(),
        repr(client),
        str(server),
        repr(chain),
        repr(client.leaf),
    ]
    for text in texts:
        assert "PRIVATE KEY" not in text
        assert "private_key" not in text
    assert client.ca_cert_pem().startswith("-----BEGIN CERTIFICATE-----\n")
    assert "LeafRole.CLIENT" in repr(client)  # the repr is still useful


@pytest.fixture
def private_tempdir(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> pathlib.Path:
    """Point tempfile at a directory of our own so other processes' files cannot confuse us."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    assert tempfile.gettempdir() == str(directory)
    return directory


@attrs.define
class LoadSpy:
    """Records what ``load_cert_chain`` was handed, at the instant it was handed."""

    paths: list[str] = attrs.Factory(list)
    link_targets: list[str] = attrs.Factory(list)
    file_modes: list[int] = attrs.Factory(list)
    directory_modes: list[int] = attrs.Factory(list)
    contents: list[bytes] = attrs.Factory(list)
    fail_with: BaseException | None = None


@pytest.fixture
def load_spy(monkeypatch: pytest.MonkeyPatch) -> LoadSpy:
    spy = LoadSpy()
    original: Callable[..., None] = ssl.SSLContext.load_cert_chain

    def spying_load(self: ssl.SSLContext, certfile: Any, *args: Any, **kwargs: Any) -> None:
        path = os.fspath(certfile)
        spy.paths.append(path)
        spy.link_targets.append(os.readlink(path) if path.startswith("/proc/") else path)
        spy.file_modes.append(stat.S_IMODE(os.stat(path).st_mode))
        spy.directory_modes.append(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode))
        with open(path, "rb") as file:
            spy.contents.append(file.read())
        if spy.fail_with is not None:
            raise spy.fail_with
        original(self, certfile, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spying_load)
    return spy


def _build_every_context() -> None:
    client, server = MtlsIdentity.generate_client(), MtlsIdentity.generate_server()
    server.server_ssl_context(client.ca_cert_pem())
    client.client_ssl_context(server.ca_cert_pem())
    chain = CertificateChain.generate()
    chain.server_ssl_context()
    chain.client_ssl_context()


def test_keys_load_through_memfd_and_leave_no_file(
    private_tempdir: pathlib.Path, load_spy: LoadSpy
) -> None:
    before = sorted(os.listdir(tempfile.gettempdir()))
    _build_every_context()
    assert sorted(os.listdir(tempfile.gettempdir())) == before == []

    assert len(load_spy.paths) == 4
    for path, target, content in zip(
        load_spy.paths, load_spy.link_targets, load_spy.contents, strict=True
    ):
        assert path.startswith("/proc/self/fd/")
        assert target.startswith("/memfd:trio-sandbox-tls-leaf")
        # The key is encrypted under a one-time password that only lives in memory.
        assert b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in content
        assert b"-----BEGIN PRIVATE KEY-----" not in content
        # The descriptor is closed once loaded.
        assert not os.path.exists(path) or os.readlink(path) != target


def _memfd_unavailable(*args: Any) -> int:
    raise OSError(errno.ENOSYS, "memfd_create is filtered here")


def test_fallback_uses_a_private_directory_removed_at_once(
    private_tempdir: pathlib.Path, load_spy: LoadSpy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "memfd_create", _memfd_unavailable)
    _build_every_context()

    assert os.listdir(tempfile.gettempdir()) == []
    assert len(load_spy.paths) == 4
    for path in load_spy.paths:
        assert pathlib.Path(path).parent.parent == private_tempdir
    assert load_spy.file_modes == [0o600] * 4
    assert load_spy.directory_modes == [0o700] * 4
    for content in load_spy.contents:
        assert b"-----BEGIN PRIVATE KEY-----" not in content


def test_fallback_directory_is_removed_even_when_loading_fails(
    private_tempdir: pathlib.Path, load_spy: LoadSpy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "memfd_create", _memfd_unavailable)
    load_spy.fail_with = ssl.SSLError("injected failure")
    client, server = MtlsIdentity.generate_client(), MtlsIdentity.generate_server()
    with pytest.raises(ssl.SSLError, match="injected failure"):
        server.server_ssl_context(client.ca_cert_pem())
    assert len(load_spy.paths) == 1
    assert os.listdir(tempfile.gettempdir()) == []


# ---------------------------------------------------------------- real handshakes


async def test_mutual_tls_handshake_succeeds_and_data_flows() -> None:
    client = MtlsIdentity.generate_client(common_name="the-host")
    server = MtlsIdentity.generate_server()
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with trio.open_nursery() as nursery:
            greeting = await start_greeting_server(
                nursery, server.server_ssl_context(client.ca_cert_pem())
            )
            stream = await connect(greeting.port, client.client_ssl_context(server.ca_cert_pem()))
            async with stream:
                assert await stream.receive_some() == b"hello the-host\n"
                await stream.send_all(b"ping")
                assert await stream.receive_some() == b"PING"
                assert stream.version() in ("TLSv1.3", "TLSv1.2")
            assert await greeting.outcomes.receive() == ServerSide(None, "the-host")
            nursery.cancel_scope.cancel()


async def test_localhost_name_is_accepted_and_a_wrong_name_is_refused() -> None:
    client, server = MtlsIdentity.generate_client(), MtlsIdentity.generate_server()
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with trio.open_nursery() as nursery:
            greeting = await start_greeting_server(
                nursery, server.server_ssl_context(client.ca_cert_pem())
            )
            client_context = client.client_ssl_context(server.ca_cert_pem())
            async with await connect(
                greeting.port, client_context, server_hostname="localhost"
            ) as stream:
                assert await stream.receive_some() == b"hello trio-sandbox-client\n"
            wrong = await connect(greeting.port, client_context, server_hostname="example.com")
            with pytest.raises(trio.BrokenResourceError) as refused:
                await wrong.do_handshake()
            await trio.aclose_forcefully(wrong)
            assert isinstance(refused.value.__cause__, ssl.SSLCertVerificationError)
            assert "Hostname mismatch" in str(refused.value.__cause__)
            nursery.cancel_scope.cancel()


@BOTH_TLS_VERSIONS
async def test_refused_without_a_client_certificate(version: ssl.TLSVersion) -> None:
    client, server = MtlsIdentity.generate_client(), MtlsIdentity.generate_server()
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with trio.open_nursery() as nursery:
            greeting = await start_greeting_server(
                nursery, server.server_ssl_context(client.ca_cert_pem())
            )
            seen = await client_observed_refusal(
                greeting.port, _no_certificate_context(server.ca_cert_pem()), version
            )
            # trio drops the server's pending alert when its handshake fails, so the
            # client sees the connection end mid-protocol rather than a named alert.
            assert isinstance(seen, ssl.SSLEOFError)
            server_side = await greeting.outcomes.receive()
            assert isinstance(server_side.error, ssl.SSLError)
            assert server_side.error.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
            nursery.cancel_scope.cancel()


@BOTH_TLS_VERSIONS
async def test_refused_with_a_client_certificate_from_another_ca(
    version: ssl.TLSVersion,
) -> None:
    client, stranger = MtlsIdentity.generate_client(), MtlsIdentity.generate_client()
    server = MtlsIdentity.generate_server()
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with trio.open_nursery() as nursery:
            greeting = await start_greeting_server(
                nursery, server.server_ssl_context(client.ca_cert_pem())
            )
            seen = await client_observed_refusal(
                greeting.port, stranger.client_ssl_context(server.ca_cert_pem()), version
            )
            assert isinstance(seen, ssl.SSLEOFError)
            server_side = await greeting.outcomes.receive()
            assert isinstance(server_side.error, ssl.SSLCertVerificationError)
            assert server_side.error.verify_message == "unable to get local issuer certificate"
            nursery.cancel_scope.cancel()


@BOTH_TLS_VERSIONS
async def test_refused_with_an_expired_client_certificate(version: ssl.TLSVersion) -> None:
    expired = MtlsIdentity.generate_client(
        not_valid_before=_now() - _days(2), not_valid_after=_now() - _days(1)
    )
    server = MtlsIdentity.generate_server()
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with trio.open_nursery() as nursery:
            greeting = await start_greeting_server(
                nursery, server.server_ssl_context(expired.ca_cert_pem())
            )
            seen = await client_observed_refusal(
                greeting.port, expired.client_ssl_context(server.ca_cert_pem()), version
            )
            assert isinstance(seen, ssl.SSLEOFError)
            server_side = await greeting.outcomes.receive()
            assert isinstance(server_side.error, ssl.SSLCertVerificationError)
            assert server_side.error.verify_message == "certificate has expired"
            nursery.cancel_scope.cancel()


async def test_refused_when_a_server_leaf_is_used_as_a_client_certificate() -> None:
    # Same CA, wrong extendedKeyUsage: OpenSSL checks the purpose, not just the chain.
    chain = CertificateChain.generate()
    wrong_purpose = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    wrong_purpose.load_verify_locations(cadata=chain.ca_cert_pem())
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with trio.open_nursery() as nursery:
            greeting = await start_greeting_server(nursery, chain.server_ssl_context())
            # Present the server leaf as a client certificate via the private loader.
            load_leaf_into_context(
                wrong_purpose, chain.server.certificate, chain.server.leaf.private_key
            )
            seen = await client_observed_refusal(
                greeting.port, wrong_purpose, ssl.TLSVersion.TLSv1_3
            )
            assert isinstance(seen, ssl.SSLEOFError)
            server_side = await greeting.outcomes.receive()
            assert isinstance(server_side.error, ssl.SSLCertVerificationError)
            assert server_side.error.verify_message == "unsuitable certificate purpose"
            nursery.cancel_scope.cancel()


@BOTH_TLS_VERSIONS
async def test_client_refuses_a_server_from_the_wrong_ca(version: ssl.TLSVersion) -> None:
    client = MtlsIdentity.generate_client()
    server, impostor = MtlsIdentity.generate_server(), MtlsIdentity.generate_server()
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with trio.open_nursery() as nursery:
            greeting = await start_greeting_server(
                nursery, impostor.server_ssl_context(client.ca_cert_pem())
            )
            client_context = _limit_to(client.client_ssl_context(server.ca_cert_pem()), version)
            stream = await connect(greeting.port, client_context)
            with pytest.raises(trio.BrokenResourceError) as refused:
                await stream.do_handshake()
            await trio.aclose_forcefully(stream)
            assert isinstance(refused.value.__cause__, ssl.SSLCertVerificationError)
            assert (
                refused.value.__cause__.verify_message == "unable to get local issuer certificate"
            )
            server_side = await greeting.outcomes.receive()
            assert server_side.error is not None
            nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- the proxy hop's chain


async def test_certificate_chain_handshake_and_client_bundle(tmp_path: pathlib.Path) -> None:
    chain = CertificateChain.generate(client_common_name="proxy-client")
    assert chain.server.ca_certificate == chain.client.ca_certificate
    bundle = chain.write_client_bundle(tmp_path / "bundle")

    assert stat.S_IMODE(os.stat(bundle.directory).st_mode) == 0o700
    for path in (bundle.ca_cert, bundle.client_cert, bundle.client_key):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in bundle.directory.iterdir()) == [
        "ca.pem",
        "client.key",
        "client.pem",
    ]
    assert bundle.ca_cert.read_text() == chain.ca_cert_pem()
    assert "PRIVATE KEY" in bundle.client_key.read_text()  # the one deliberate export

    with trio.fail_after(HANG_GUARD_SECONDS):
        async with trio.open_nursery() as nursery:
            greeting = await start_greeting_server(nursery, chain.server_ssl_context())
            for client_context in (
                chain.client_ssl_context(),
                load_client_ssl_context(bundle.directory),
            ):
                async with await connect(greeting.port, client_context) as stream:
                    assert await stream.receive_some() == b"hello proxy-client\n"
            nursery.cancel_scope.cancel()


def test_client_bundle_refuses_a_shared_directory_and_a_readable_key(
    tmp_path: pathlib.Path,
) -> None:
    chain = CertificateChain.generate()
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    with pytest.raises(PermissionError, match="not a private directory"):
        chain.write_client_bundle(shared)
    assert list(shared.iterdir()) == []

    bundle = chain.write_client_bundle(tmp_path / "bundle")
    chain.write_client_bundle(bundle.directory)  # rewriting our own 0700 directory is fine
    os.chmod(bundle.client_key, 0o644)
    with pytest.raises(PermissionError, match="0644"):
        load_client_ssl_context(bundle.directory)
