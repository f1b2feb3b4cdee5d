"""Where the metrics listen: ``HOST:PORT`` (``127.0.0.1:9464``, ``[::1]:0``, ``localhost:9464``).

Parsed strictly here, so that a typo is an :class:`ObserveError` naming the setting rather than
whatever the socket layer makes of it later. The host is required: listening on every interface
must be asked for (``0.0.0.0:9464``, ``[::]:9464``), never the result of a missing host.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from ._errors import ObserveError

# A DNS name as a listen host may be written: dot-separated labels of letters, digits, hyphens.
_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MAX_NAME: Final = 253
_MAX_PORT: Final = 65535
EXAMPLE: Final = "127.0.0.1:9464"


def _fail(text: str, why: str) -> ObserveError:
    return ObserveError(f"metrics listen address {text!r}: {why} (for example {EXAMPLE})")


def _host_name(text: str, host: str) -> str:
    if host.isascii() and all(c.isdigit() or c == "." for c in host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise _fail(text, f"{host!r} is not an IPv4 address") from None
    name = host.removesuffix(".")
    if (
        not name.isascii()
        or len(name) > _MAX_NAME
        or not all(_LABEL.fullmatch(label) for label in name.split("."))
    ):
        raise _fail(text, f"{host!r} is not an IP address or a host name")
    return name


def parse_listen_address(text: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (an IPv6 host in brackets); port 0 picks a free one."""
    if "://" in text:
        raise _fail(text, "give HOST:PORT, not a URL")
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise _fail(text, "an IPv6 address in brackets needs its closing ']'")
        if not rest.startswith(":"):
            raise _fail(text, "the port is missing after the ']'")
        try:
            address = ipaddress.IPv6Address(inside)
        except ValueError:
            raise _fail(text, f"{inside!r} is not an IPv6 address") from None
        if address.scope_id is not None:
            raise _fail(text, "an IPv6 address with a zone (%...) cannot be listened on here")
        host, port = str(address), rest[1:]
    else:
        host, colon, port = text.rpartition(":")
        if not colon:
            raise _fail(text, "give a host and a port, HOST:PORT")
        if ":" in host:
            raise _fail(text, "put an IPv6 address in brackets, [ADDRESS]:PORT")
        if not host:
            raise _fail(text, "the host is missing (0.0.0.0 listens on every interface)")
        host = _host_name(text, host)
    # int() would take " 1", "+1", "1_000" and other scripts' digits.
    if not (port.isascii() and port.isdigit()) or int(port) > _MAX_PORT:
        raise _fail(text, f"the port {port!r} is not a number from 0 to {_MAX_PORT}")
    return host, int(port)
