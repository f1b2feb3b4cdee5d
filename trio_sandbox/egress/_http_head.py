"""HTTP/1.x message heads and body framing, parsed strictly (RFC 9112), written canonically.

A proxy that reads a message one way while the next hop reads it another is how requests are
smuggled, so anything ambiguous is refused rather than repaired: obsolete line folding, a space
before a colon, bare LF, both Content-Length and Transfer-Encoding, differing Content-Lengths, a
transfer coding other than ``chunked``. Heads are written back from the parsed fields, never
forwarded as received.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from typing import Final, TypeAlias

import attrs

from ._errors import HttpError

MAX_HEAD_BYTES: Final = 65536
MAX_CHUNK_LINE: Final = 4096

Fields: TypeAlias = tuple[tuple[str, str], ...]

_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE: Final = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_TARGET: Final = re.compile(rb"[\x21-\x7e]+")
_VERSION: Final = re.compile(rb"HTTP/([0-9])\.([0-9])")
_STATUS_LINE: Final = re.compile(rb"(HTTP/[0-9]\.[0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
_CHUNK_EXTENSION: Final = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_DIGITS: Final = re.compile(r"[0-9]{1,18}")

# Hop-by-hop fields (RFC 9110 7.6.1); the Proxy-* family is dropped too (it is addressed to this
# proxy). Transfer-Encoding and Content-Length are kept: bodies are relayed in the framing they
# came in, so the fields that describe it stay true.
HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}
)


def field_values(fields: Fields, name: str) -> list[str]:
    """Every comma-separated value of the fields called ``name`` (case-insensitive)."""
    return [
        part.strip()
        for field, value in fields
        if field.lower() == name
        for part in value.split(",")
        if part.strip()
    ]


@attrs.frozen
class RequestHead:
    method: str
    target: str
    version: str  # "HTTP/1.0" or "HTTP/1.1"
    fields: Fields

    @property
    def wants_close(self) -> bool:
        tokens = {value.lower() for value in field_values(self.fields, "connection")}
        return self.version == "HTTP/1.0" or "close" in tokens


@attrs.frozen
class ResponseHead:
    version: str
    status: int
    reason: str
    fields: Fields

    @property
    def closes(self) -> bool:
        tokens = {value.lower() for value in field_values(self.fields, "connection")}
        return self.version == "HTTP/1.0" or "close" in tokens


def split_head_lines(data: bytes, status: int) -> list[bytes]:
    if not data.endswith(b"\r\n\r\n"):
        raise HttpError(status, "the head does not end with an empty line")
    return split_lines(data[:-2], status)


def split_lines(data: bytes, status: int) -> list[bytes]:
    """The lines of ``data`` (each ends with CRLF; the last CRLF ends the last line)."""
    lines = data[:-2].split(b"\r\n")
    if any(b"\n" in line or b"\r" in line for line in lines):
        raise HttpError(status, "bare CR or LF in the head (lines end with CRLF)")
    return lines


def parse_fields(lines: Sequence[bytes], status: int) -> Fields:
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise HttpError(status, "obsolete line folding in a header field")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise HttpError(status, f"malformed header field {_shown(line)}")
        value = value.strip(b" \t")
        if not _FIELD_VALUE.fullmatch(value):
            raise HttpError(status, f"control character in header field {_shown(name)}")
        fields.append((name.decode("ascii"), value.decode("latin-1")))
    return tuple(fields)


def _shown(data: bytes, limit: int = 60) -> str:
    text = repr(data[:limit])[1:]
    return text if len(data) <= limit else text + "..."


def parse_request_head(data: bytes) -> RequestHead:
    """The request line and fields of ``data``, which ends with CRLF CRLF; :class:`HttpError`
    with 400 (or 505 for another HTTP version) when it is not a valid HTTP/1.x request head."""
    request_line, *field_lines = split_head_lines(data, 400)
    parts = request_line.split(b" ")
    if len(parts) != 3:
        raise HttpError(400, f"malformed request line {_shown(request_line)}")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise HttpError(400, f"malformed method {_shown(method)}")
    if not _TARGET.fullmatch(target):
        raise HttpError(400, f"malformed request target {_shown(target)}")
    matched = _VERSION.fullmatch(version)
    if matched is None:
        raise HttpError(400, f"malformed HTTP version {_shown(version)}")
    if matched[1] != b"1":
        raise HttpError(505, f"HTTP version {version.decode()} is not supported; use HTTP/1.1")
    return RequestHead(
        method.decode("ascii"),
        target.decode("ascii"),
        "HTTP/1.0" if matched[2] == b"0" else "HTTP/1.1",
        parse_fields(field_lines, 400),
    )


def parse_response_head(data: bytes) -> ResponseHead:
    """The status line and fields of an upstream response head; :class:`HttpError` 502 if bad."""
    status_line, *field_lines = split_head_lines(data, 502)
    matched = _STATUS_LINE.fullmatch(status_line)
    if matched is None or not matched[1].startswith(b"HTTP/1."):
        raise HttpError(502, f"the upstream sent a malformed status line {_shown(status_line)}")
    return ResponseHead(
        matched[1].decode("ascii"),
        int(matched[2]),
        (matched[3] or b"").decode("latin-1"),
        parse_fields(field_lines, 502),
    )


class Framing(enum.Enum):
    NONE = "none"
    LENGTH = "length"
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until close"


@attrs.frozen
class Body:
    framing: Framing
    length: int = 0


def _content_length(fields: Fields, status: int) -> int | None:
    values = field_values(fields, "content-length")
    if not values:
        return None
    if len(set(values)) != 1 or not _DIGITS.fullmatch(values[0]):
        raise HttpError(status, f"bad Content-Length {', '.join(values)!r}")
    return int(values[0])


def request_body(head: RequestHead) -> Body:
    codings = [coding.lower() for coding in field_values(head.fields, "transfer-encoding")]
    length = _content_length(head.fields, 400)
    if codings:
        if length is not None:
            raise HttpError(400, "both Transfer-Encoding and Content-Length")
        if head.version == "HTTP/1.0":
            # RFC 9112 6.1: its framing is faulty (an HTTP/1.0 hop would not read it).
            raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if codings != ["chunked"]:
            raise HttpError(501, f"Transfer-Encoding {', '.join(codings)!r} is not supported")
        return Body(Framing.CHUNKED)
    if length is None or length == 0:
        return Body(Framing.NONE)
    return Body(Framing.LENGTH, length)


def response_body(head: ResponseHead, request_method: str) -> Body:
    if request_method == "HEAD" or head.status < 200 or head.status in (204, 304):
        return Body(Framing.NONE)
    codings = [coding.lower() for coding in field_values(head.fields, "transfer-encoding")]
    if codings:
        return Body(Framing.CHUNKED if codings[-1] == "chunked" else Framing.UNTIL_CLOSE)
    length = _content_length(head.fields, 502)
    if length is None:
        return Body(Framing.UNTIL_CLOSE)
    return Body(Framing.LENGTH, length) if length else Body(Framing.NONE)


def parse_chunk_size(line: bytes) -> int:
    """The size in a chunk-size line (``1a;ext=1\\r\\n``); :class:`HttpError` 400 if bad."""
    if not line.endswith(b"\r\n"):
        raise HttpError(400, "a chunk-size line does not end with CRLF")
    size, _, extension = line[:-2].partition(b";")
    size = size.rstrip(b" \t")
    if not _HEX.fullmatch(size) or not _CHUNK_EXTENSION.fullmatch(extension):
        raise HttpError(400, f"malformed chunk-size line {_shown(line)}")
    return int(size, 16)


def end_to_end(fields: Fields) -> Fields:
    """``fields`` without the hop-by-hop ones (the fixed set, those that Connection names, any
    Proxy-*) and without Host, which the forwarder writes from the request target."""
    named = {value.lower() for value in field_values(fields, "connection")}
    named.discard("transfer-encoding")
    named.discard("content-length")
    return tuple(
        (name, value)
        for name, value in fields
        if (lower := name.lower()) not in HOP_BY_HOP
        and lower != "host"
        and lower not in named
        and not lower.startswith("proxy-")
    )


def write_head(start_line: str, fields: Iterable[tuple[str, str]]) -> bytes:
    lines = [start_line, *(f"{name}: {value}" for name, value in fields)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
