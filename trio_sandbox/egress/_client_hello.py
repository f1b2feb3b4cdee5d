"""The server name (SNI) of a TLS ClientHello, read from the first bytes a client sends.

Only what the egress proxy needs to tell where a plain tunnel's TLS is meant to go: the
``host_name`` entry of the ``server_name`` extension (RFC 6066) in the first handshake record.
Anything truncated, malformed or absent is None; nothing here raises on hostile bytes.
"""

from __future__ import annotations

from typing import Final

_HANDSHAKE: Final = 0x16
_CLIENT_HELLO: Final = 0x01
_SERVER_NAME: Final = 0x0000
_HOST_NAME: Final = 0x00


class _Truncated(Exception):
    pass


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise _Truncated
        taken = self.data[self.at : self.at + size]
        self.at += size
        return taken

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> bytes:
        return self.take(self.number(length_size))


def is_tls_handshake(data: bytes) -> bool:
    """Whether ``data`` starts like a TLS handshake record (0x16, version 3.x)."""
    return len(data) >= 2 and data[0] == _HANDSHAKE and data[1] == 3


def server_name(data: bytes) -> str | None:
    """The host name a ClientHello at the start of ``data`` asks for, or None."""
    try:
        return _server_name(data)
    except _Truncated:
        return None


def _server_name(data: bytes) -> str | None:
    if not is_tls_handshake(data):
        return None
    record = _Reader(data)
    record.take(3)  # type, version
    fragment = _Reader(record.vector(2))
    if fragment.number(1) != _CLIENT_HELLO:
        return None
    hello = _Reader(fragment.take(fragment.number(3)))
    hello.take(2 + 32)  # client_version, random
    hello.vector(1)  # session id
    hello.vector(2)  # cipher suites
    hello.vector(1)  # compression methods
    if hello.at == len(hello.data):
        return None  # no extensions
    extensions = _Reader(hello.vector(2))
    while extensions.at < len(extensions.data):
        kind = extensions.number(2)
        body = extensions.vector(2)
        if kind != _SERVER_NAME:
            continue
        names = _Reader(_Reader(body).vector(2))
        while names.at < len(names.data):
            name_type = names.number(1)
            name = names.vector(2)
            if name_type == _HOST_NAME:
                return name.decode("ascii") if name.isascii() and name else None
        return None
    return None
