"""Host names, IP literals and ports as they appear in rules, CONNECT targets, URLs and SOCKS.

One normalisation for every source, so a rule and a request can only ever be compared in the same
form: lower case, no trailing dot, international names as IDNA A-labels (``xn--``), IP literals as
:mod:`ipaddress` objects. Anything a resolver could read as something other than what a rule
matched (``127.1``, ``0x7f.1``, bare IPv6 in an authority) is refused here.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Final, TypeAlias

from ._errors import DestinationError

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Host: TypeAlias = str | IPAddress  # str: a normalised host name

MAX_NAME_LENGTH: Final = 253
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")
# Characters that IDNA 2003 (the stdlib codec) maps away but IDNA 2008 keeps, so the two
# standards send such a name to different hosts; refused rather than guessed.
_IDNA_DEVIATIONS: Final = frozenset("\u00df\u03c2\u200c\u200d")


def parse_host(text: str) -> Host:
    """A host name, an IPv4 literal, or an IPv6 literal (bare or in brackets), normalised."""
    if not text:
        raise DestinationError(text, "empty host name")
    if text.startswith("["):
        if not text.endswith("]"):
            raise DestinationError(text, "an IPv6 literal in brackets lacks its closing ']'")
        address = _parse_ip(text[1:-1])
        if not isinstance(address, ipaddress.IPv6Address):
            raise DestinationError(text, "only an IPv6 address is written in brackets")
        return address
    address = _parse_ip(text)
    return address if address is not None else _normalise_name(text)


def _parse_ip(text: str) -> IPAddress | None:
    if "%" in text:
        raise DestinationError(text, "an IPv6 zone index ('%...') names a local interface")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        if ":" in text:
            raise DestinationError(text, "not a valid IPv6 address") from None
        return None


def _normalise_name(text: str) -> str:
    name = text[:-1] if text.endswith(".") else text
    if not name.isascii():
        name = _to_a_labels(text, name)
    name = name.lower()
    if len(name) > MAX_NAME_LENGTH:
        raise DestinationError(text, f"longer than {MAX_NAME_LENGTH} characters")
    for label in name.split("."):
        if not label:
            raise DestinationError(text, "empty label (two dots in a row, or a leading dot)")
        if not _LABEL.fullmatch(label):
            bad = sorted({c for c in label if not (c.isascii() and (c.isalnum() or c in "-_"))})
            raise DestinationError(
                text,
                f"bad character(s) {''.join(bad)!r}: a host name has letters, digits, '-', '_' "
                "and '.' only"
                if bad
                else f"bad label {label!r} (1 to 63 characters, not starting or ending with '-')",
            )
    if _reads_as_ipv4(name):
        raise DestinationError(
            text, "reads as an IPv4 address in a non-standard form; write it as a.b.c.d"
        )
    return name


def _to_a_labels(text: str, name: str) -> str:
    if _IDNA_DEVIATIONS & set(name):
        raise DestinationError(
            text,
            "contains a character that IDNA 2003 and IDNA 2008 map differently (ß, ς, ZWJ, "
            "ZWNJ); write the name in its xn-- form",
        )
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError as error:
        raise DestinationError(text, f"not a valid international domain name ({error})") from None


def _reads_as_ipv4(name: str) -> bool:
    """True for names the C resolver reads as an IPv4 address (``127.1``, ``0x7f000001``)."""
    if name.rsplit(".", 1)[-1].isdigit():
        return True
    try:
        socket.inet_aton(name)
    except OSError:
        return False
    return True


def parse_port(text: str, whole: str) -> int:
    """A TCP port 1..65535 written in decimal; ``whole`` is the entry it came from, for errors."""
    if not _PORT.fullmatch(text) or not 0 < int(text) <= 65535:
        raise DestinationError(whole, f"bad port {text!r} (a number from 1 to 65535)")
    return int(text)


def split_host_port(text: str, *, bare_ipv6: bool) -> tuple[str, str | None]:
    """``host[:port]`` or ``[v6][:port]`` into its host text (brackets kept) and port text.

    ``bare_ipv6``: whether an unbracketed IPv6 address (no port) may stand alone, as in a rule;
    in a URL or a CONNECT target it may not (``::1:443`` would be ambiguous).
    """
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise DestinationError(text, "an IPv6 literal in brackets lacks its closing ']'")
        host, rest = text[: close + 1], text[close + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise DestinationError(text, "unexpected text after the bracketed IPv6 address")
        return host, rest[1:]
    colons = text.count(":")
    if colons == 0:
        return text, None
    if colons == 1:
        host, port = text.split(":")
        return host, port
    if bare_ipv6:
        return text, None
    raise DestinationError(text, "an IPv6 address is written in brackets: [ADDRESS]:PORT")


def format_host(host: Host) -> str:
    """The host as it is written before ``:PORT`` (IPv6 in brackets)."""
    return f"[{host}]" if isinstance(host, ipaddress.IPv6Address) else str(host)


def format_destination(host: Host, port: int) -> str:
    return f"{format_host(host)}:{port}"
