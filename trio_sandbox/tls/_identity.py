"""mTLS identities: a fresh CA plus leaves, and the ``ssl.SSLContext`` objects built from them."""

from __future__ import annotations

import datetime
import os
import ssl

import attrs
from cryptography import x509

from ._bundle import ClientBundlePaths, write_client_bundle
from ._errors import UnusableCaError
from ._key_loading import load_leaf_into_context
from ._x509 import IssuedLeaf, LeafRole, certificate_pem, issue_leaves

DEFAULT_SERVER_HOSTNAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
DEFAULT_CLIENT_COMMON_NAME = "trio-sandbox-client"
# HTTP/1.1 only: MCP's Streamable HTTP (SSE) and WebSocket upgrades both live on HTTP/1.1,
# every MCP client speaks it, and hypercorn's h2 path would be a second, untested code path.
HTTP_ALPN_PROTOCOLS: tuple[str, ...] = ("http/1.1",)


def _checked_ca_pem(ca_pem: str) -> str:
    """Refuse a trust anchor that is not one or more PEM certificates (clear error, not SSL's)."""
    try:
        certificates = x509.load_pem_x509_certificates(ca_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as error:
        raise UnusableCaError(f"trusted CA is not a PEM X.509 certificate: {error}") from None
    for certificate in certificates:
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            continue  # legacy CA without the extension; OpenSSL decides
        if not constraints.value.ca:
            raise UnusableCaError("trusted CA certificate is not a CA (basicConstraints CA:false)")
    return ca_pem


def _base_context(protocol: int, trusted_ca_pem: str) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    # Trust exactly this CA: no system store is ever loaded into these contexts.
    context.load_verify_locations(cadata=_checked_ca_pem(trusted_ca_pem))
    return context


@attrs.frozen(eq=False)
class MtlsIdentity:
    """One side of a mutual-TLS link: a leaf certificate, its key, and the CA that signed it.

    Each identity has its own single-use CA whose private key was discarded after signing,
    so the CA vouches for this one leaf only. The leaf key stays in this object (never in
    its repr) and reaches OpenSSL through :func:`load_leaf_into_context`.
    """

    leaf: IssuedLeaf

    @classmethod
    def generate_client(
        cls,
        *,
        common_name: str = DEFAULT_CLIENT_COMMON_NAME,
        not_valid_before: datetime.datetime | None = None,
        not_valid_after: datetime.datetime | None = None,
    ) -> MtlsIdentity:
        """A fresh CA and a client leaf (extendedKeyUsage clientAuth)."""
        (leaf,) = issue_leaves(
            ca_common_name=f"{common_name} CA",
            leaves=[(LeafRole.CLIENT, common_name, ())],
            not_valid_before=not_valid_before,
            not_valid_after=not_valid_after,
        )
        return cls(leaf)

    @classmethod
    def generate_server(
        cls,
        *,
        hostnames: tuple[str, ...] = DEFAULT_SERVER_HOSTNAMES,
        not_valid_before: datetime.datetime | None = None,
        not_valid_after: datetime.datetime | None = None,
    ) -> MtlsIdentity:
        """A fresh CA and a server leaf (serverAuth) whose SANs are ``hostnames``."""
        if not hostnames:
            raise ValueError("a server identity needs at least one hostname")
        (leaf,) = issue_leaves(
            ca_common_name=f"trio-sandbox server CA ({hostnames[0]})",
            leaves=[(LeafRole.SERVER, hostnames[0], hostnames)],
            not_valid_before=not_valid_before,
            not_valid_after=not_valid_after,
        )
        return cls(leaf)

    @property
    def role(self) -> LeafRole:
        return self.leaf.role

    @property
    def certificate(self) -> x509.Certificate:
        return self.leaf.certificate

    @property
    def ca_certificate(self) -> x509.Certificate:
        return self.leaf.ca_certificate

    def ca_cert_pem(self) -> str:
        """The CA certificate (public) that peers must trust to accept this identity."""
        return certificate_pem(self.leaf.ca_certificate)

    def server_ssl_context(self, trusted_client_ca_pem: str) -> ssl.SSLContext:
        """Serve TLS 1.2+ as this leaf; require a client certificate chaining to that CA."""
        self._require_role(LeafRole.SERVER)
        context = _base_context(ssl.PROTOCOL_TLS_SERVER, trusted_client_ca_pem)
        context.set_alpn_protocols(list(HTTP_ALPN_PROTOCOLS))
        load_leaf_into_context(context, self.leaf.certificate, self.leaf.private_key)
        return context

    def client_ssl_context(self, trusted_server_ca_pem: str) -> ssl.SSLContext:
        """Connect as this leaf; trust only servers chaining to that CA; check the hostname."""
        self._require_role(LeafRole.CLIENT)
        context = _base_context(ssl.PROTOCOL_TLS_CLIENT, trusted_server_ca_pem)
        context.check_hostname = True
        load_leaf_into_context(context, self.leaf.certificate, self.leaf.private_key)
        return context

    def _require_role(self, role: LeafRole) -> None:
        if self.leaf.role is not role:
            raise ValueError(
                f"this identity's leaf is a {self.leaf.role.value} certificate; "
                f"a {role.value} context needs a {role.value} leaf"
            )


@attrs.frozen(eq=False)
class CertificateChain:
    """One CA that signs both a server leaf and a client leaf: the proxy hop's two ends.

    Both ends trust only this CA. The CA key was discarded after signing both leaves.
    """

    server: MtlsIdentity
    client: MtlsIdentity

    @classmethod
    def generate(
        cls,
        *,
        server_hostnames: tuple[str, ...] = DEFAULT_SERVER_HOSTNAMES,
        client_common_name: str = DEFAULT_CLIENT_COMMON_NAME,
        not_valid_before: datetime.datetime | None = None,
        not_valid_after: datetime.datetime | None = None,
    ) -> CertificateChain:
        if not server_hostnames:
            raise ValueError("a server leaf needs at least one hostname")
        server_leaf, client_leaf = issue_leaves(
            ca_common_name="trio-sandbox proxy CA",
            leaves=[
                (LeafRole.SERVER, server_hostnames[0], server_hostnames),
                (LeafRole.CLIENT, client_common_name, ()),
            ],
            not_valid_before=not_valid_before,
            not_valid_after=not_valid_after,
        )
        return cls(server=MtlsIdentity(server_leaf), client=MtlsIdentity(client_leaf))

    def ca_cert_pem(self) -> str:
        return self.server.ca_cert_pem()

    def server_ssl_context(self) -> ssl.SSLContext:
        """Serve as the server leaf; accept only clients signed by this chain's CA."""
        return self.server.server_ssl_context(self.ca_cert_pem())

    def client_ssl_context(self) -> ssl.SSLContext:
        """Connect as the client leaf; accept only servers signed by this chain's CA."""
        return self.client.client_ssl_context(self.ca_cert_pem())

    def write_client_bundle(self, directory: str | os.PathLike[str]) -> ClientBundlePaths:
        """Export ca.pem, client.pem and client.key (0600) into a 0700 directory.

        This is the one place a private key is written to disk on purpose: the user asked
        for it, so that a client in another process (an MCP host) can reach the proxy.
        Treat the directory like an SSH key; read it back with ``load_client_ssl_context``.
        """
        leaf = self.client.leaf
        return write_client_bundle(
            directory,
            ca_pem=self.ca_cert_pem(),
            certificate=leaf.certificate,
            private_key=leaf.private_key,
        )
