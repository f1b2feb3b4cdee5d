"""Minting a throw-away CA and the leaves it signs (ECDSA P-256, SHA-256)."""

from __future__ import annotations

import datetime
import enum
import ipaddress
from collections.abc import Iterable

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Tolerate a sandbox or container whose clock lags the host's a little.
CLOCK_SKEW_ALLOWANCE = datetime.timedelta(hours=1)
DEFAULT_LEAF_LIFETIME = datetime.timedelta(days=365)


class LeafRole(enum.Enum):
    """Which side of a TLS connection a leaf certificate authenticates."""

    CLIENT = "client"
    SERVER = "server"


@attrs.frozen(eq=False)
class IssuedLeaf:
    """A leaf certificate with its private key, plus the CA certificate that signed it."""

    role: LeafRole
    certificate: x509.Certificate
    ca_certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey = attrs.field(repr=False)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def certificate_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _subject_alternative_name(hostnames: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for hostname in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(hostname)))
        except ValueError:
            names.append(x509.DNSName(hostname))
    return x509.SubjectAlternativeName(names)


def _key_usage(*, authority: bool) -> x509.KeyUsage:
    """A CA signs certificates (and CRLs); a leaf signs its handshakes (ECDSA)."""
    return x509.KeyUsage(
        digital_signature=not authority,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=authority,
        crl_sign=authority,
        encipher_only=False,
        decipher_only=False,
    )


def _name(common_name: str | None) -> x509.Name:
    """O=trio_sandbox, and the common name if there is one."""
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trio_sandbox")]
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def issue_leaves(
    *,
    ca_common_name: str,
    leaves: Iterable[tuple[LeafRole, str, tuple[str, ...]]],
    not_valid_before: datetime.datetime | None = None,
    not_valid_after: datetime.datetime | None = None,
) -> list[IssuedLeaf]:
    """Create a fresh CA, sign one leaf per (role, common name, hostnames), drop the CA key.

    The CA private key lives only inside this call: once the leaves are signed nobody can
    mint another certificate that the returned CA would vouch for.
    """
    now = utc_now()
    leaf_not_before = now - CLOCK_SKEW_ALLOWANCE if not_valid_before is None else not_valid_before
    leaf_not_after = now + DEFAULT_LEAF_LIFETIME if not_valid_after is None else not_valid_after
    if leaf_not_after <= leaf_not_before:
        raise ValueError("not_valid_after must be later than not_valid_before")
    # The CA outlives every leaf it signs, so a leaf's own dates decide whether it is valid
    # (an expired client leaf must fail as expired, not as "issuer expired").
    ca_not_before = min(now - CLOCK_SKEW_ALLOWANCE, leaf_not_before)
    ca_not_after = max(now + DEFAULT_LEAF_LIFETIME, leaf_not_after)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_certificate = sign_ca(
        ca_key=ca_key,
        common_name=ca_common_name,
        not_valid_before=ca_not_before,
        not_valid_after=ca_not_after,
    )

    issued: list[IssuedLeaf] = []
    for role, common_name, hostnames in leaves:
        certificate, leaf_key = sign_leaf(
            ca_key=ca_key,
            ca_certificate=ca_certificate,
            role=role,
            common_name=common_name,
            hostnames=hostnames,
            not_valid_before=leaf_not_before,
            not_valid_after=leaf_not_after,
        )
        issued.append(
            IssuedLeaf(
                role=role,
                certificate=certificate,
                ca_certificate=ca_certificate,
                private_key=leaf_key,
            )
        )
    return issued


def sign_ca(
    *,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    not_valid_before: datetime.datetime,
    not_valid_after: datetime.datetime,
    name_constraints: x509.NameConstraints | None = None,
) -> x509.Certificate:
    """The self-signed certificate of a CA that signs leaves only (path length 0), limited to
    ``name_constraints`` (critical) when given."""
    ca_name = _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_valid_before)
        .not_valid_after(not_valid_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(authority=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
    )
    if name_constraints is not None:
        builder = builder.add_extension(name_constraints, critical=True)
    return builder.sign(ca_key, hashes.SHA256())


def sign_leaf(
    *,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_certificate: x509.Certificate,
    role: LeafRole,
    common_name: str | None,
    hostnames: Iterable[str],
    not_valid_before: datetime.datetime,
    not_valid_after: datetime.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A fresh key and its leaf certificate for ``role``, signed by ``ca_key`` (whose
    certificate is ``ca_certificate``); ``hostnames`` become DNS or IP subject alternative
    names. ``common_name`` None: an empty subject, the names in a critical SAN (RFC 5280
    4.2.1.6), for a CA with name constraints: GnuTLS (git, apt) checks a leaf's common name
    against the DNS constraints when it has no DNS SAN, so an IP leaf with any common name
    fails there."""
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    usage = (
        ExtendedKeyUsageOID.SERVER_AUTH
        if role is LeafRole.SERVER
        else ExtendedKeyUsageOID.CLIENT_AUTH
    )
    authority_key_identifier = x509.AuthorityKeyIdentifier.from_issuer_public_key(
        ca_key.public_key()
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name) if common_name is not None else x509.Name([]))
        .issuer_name(ca_certificate.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_valid_before)
        .not_valid_after(not_valid_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(authority=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
        )
        .add_extension(authority_key_identifier, critical=False)
    )
    hostnames = tuple(hostnames)
    if hostnames:
        builder = builder.add_extension(
            _subject_alternative_name(hostnames), critical=common_name is None
        )
    return builder.sign(ca_key, hashes.SHA256()), leaf_key
