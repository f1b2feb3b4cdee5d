"""Hand a certificate and its private key to an ``ssl.SSLContext`` without leaving a file.

The stdlib ``ssl`` module reads certificate chains and keys from paths only. We give it a
path that exists for the instant of loading: an anonymous in-memory file (``memfd``) seen
through ``/proc/self/fd/N``, or, where memfd or /proc is missing, a 0600 file inside a
fresh 0700 directory that is removed straight after. Either way the key is written
encrypted under a random one-time password that never leaves this process's memory, so
even the fallback file is useless to anyone who copies it in that instant.
"""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

_MEMFD_NAME = "trio-sandbox-tls-leaf"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _load_via_memfd(context: ssl.SSLContext, pem: bytes, password: bytes) -> bool:
    """Load through an anonymous memory file; False when this platform cannot."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is None:
        return False
    try:
        fd: int = memfd_create(_MEMFD_NAME, os.MFD_CLOEXEC)
    except OSError:
        return False  # e.g. ENOSYS under a seccomp filter
    try:
        path = f"/proc/self/fd/{fd}"
        if not os.path.exists(path):
            return False  # no /proc mounted (some sandboxes)
        _write_all(fd, pem)
        context.load_cert_chain(path, password=password)
        return True
    finally:
        os.close(fd)


def _load_via_private_directory(context: ssl.SSLContext, pem: bytes, password: bytes) -> None:
    directory = tempfile.mkdtemp(prefix="trio-sandbox-tls-")  # mode 0700
    try:
        path = os.path.join(directory, "leaf.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            _write_all(fd, pem)
        finally:
            os.close(fd)
        context.load_cert_chain(path, password=password)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def load_leaf_into_context(
    context: ssl.SSLContext,
    certificate: x509.Certificate,
    private_key: ec.EllipticCurvePrivateKey,
) -> None:
    """Make ``context`` present ``certificate``, proving possession of ``private_key``."""
    password = secrets.token_bytes(32)
    pem = certificate.public_bytes(serialization.Encoding.PEM) + private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    if not _load_via_memfd(context, pem, password):
        _load_via_private_directory(context, pem, password)
