"""The explicit, user-requested export of a client identity for a client in another process."""

from __future__ import annotations

import os
import pathlib
import ssl
import stat

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ._errors import NotAPrivateDirectoryError, UnsafeKeyPlaceError

CA_FILE_NAME = "ca.pem"
CLIENT_CERT_FILE_NAME = "client.pem"
CLIENT_KEY_FILE_NAME = "client.key"


@attrs.frozen
class ClientBundlePaths:
    """Where a client bundle's three files are."""

    directory: pathlib.Path
    ca_cert: pathlib.Path
    client_cert: pathlib.Path
    client_key: pathlib.Path

    @classmethod
    def in_directory(cls, directory: str | os.PathLike[str]) -> ClientBundlePaths:
        path = pathlib.Path(directory)
        return cls(
            directory=path,
            ca_cert=path / CA_FILE_NAME,
            client_cert=path / CLIENT_CERT_FILE_NAME,
            client_key=path / CLIENT_KEY_FILE_NAME,
        )


def _make_private_directory(directory: pathlib.Path) -> None:
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode):
            raise NotAPrivateDirectoryError(f"{directory} exists and is not a directory") from None
        if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
            raise UnsafeKeyPlaceError(
                f"{directory} already exists but is not a private directory "
                "(it must be ours with mode 0700) - refusing to put a private key there"
            ) from None
    os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask


def _write_private_file(path: pathlib.Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the file may have existed with a wider mode
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def write_client_bundle(
    directory: str | os.PathLike[str],
    *,
    ca_pem: str,
    certificate: x509.Certificate,
    private_key: ec.EllipticCurvePrivateKey,
) -> ClientBundlePaths:
    paths = ClientBundlePaths.in_directory(directory)
    _make_private_directory(paths.directory)
    _write_private_file(paths.ca_cert, ca_pem.encode("ascii"))
    _write_private_file(paths.client_cert, certificate.public_bytes(serialization.Encoding.PEM))
    _write_private_file(
        paths.client_key,
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return paths


def load_client_ssl_context(bundle_directory: str | os.PathLike[str]) -> ssl.SSLContext:
    """A client context from a bundle written by ``CertificateChain.write_client_bundle``.

    Trusts only the bundle's CA, checks the hostname, presents the bundle's client leaf.
    Refuses a key file that others may read, as ssh does.
    """
    paths = ClientBundlePaths.in_directory(bundle_directory)
    key_mode = stat.S_IMODE(os.stat(paths.client_key).st_mode)
    if key_mode & 0o077:
        raise UnsafeKeyPlaceError(
            f"{paths.client_key} has mode {key_mode:04o}; a private key must be 0600 or stricter"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    context.load_verify_locations(cafile=paths.ca_cert)
    context.load_cert_chain(paths.client_cert, paths.client_key)
    return context
