"""Talking to authorization servers (and to protected resource metadata): one request, its
answer bounded in size and time, parsed as JSON; never a redirect followed."""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import urlsplit

import attrs
import httpx
import trio

from ._errors import OAuthError

# Metadata and token answers are a few kilobytes; a megabyte is generous and still bounded.
MAX_ANSWER_BYTES: Final = 1 << 20
ANSWER_TIMEOUT: Final = 30.0
# A host whose last label is a number is an IPv4 address to browsers and resolvers, however
# spelled (2130706433, 0177.0.0.1, 0x7f.1): only the dotted-decimal form is taken as one.
_NUMERIC_LABEL: Final = re.compile(r"[0-9]+|0x[0-9a-f]*")
# Server strings shown in errors: enough to recognize, bounded.
_SHOWN_CHARS: Final = 80
# URLs from servers end up in messages (and requests): real ones are far shorter.
MAX_URL_CHARS: Final = 2048


@attrs.frozen
class JsonAnswer:
    status: int
    body: object  # the parsed JSON, None when the body is not JSON
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)


def shown(value: object) -> str:
    """A server's value for an error message: its repr, cut to a bounded length."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower().removesuffix(".")


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_odd_numeric_host(url: str) -> bool:
    """A host that names an IPv4 address other than in dotted decimal (an integer, octal,
    hex, fewer than four parts): a way past checks of the address, so refused."""
    host = _host(url)
    return bool(_NUMERIC_LABEL.fullmatch(host.rpartition(".")[2])) and _address(host) is None


def is_loopback(url: str) -> bool:
    """Whether the URL's host is this machine: localhost names, loopback and unspecified
    addresses (also IPv4-mapped), and numeric hosts not in canonical form (see above). A DNS
    name resolving to a loopback address is not seen here."""
    host = _host(url)
    if host == "localhost" or host.endswith(".localhost") or is_odd_numeric_host(url):
        return True
    address = _address(host)
    return address is not None and (address.is_loopback or address.is_unspecified)


def require_secure_url(url: object, what: str, *, local: bool) -> str:
    """``url`` as an absolute https URL without a fragment; OAuthError naming ``what``
    otherwise. ``local`` (the MCP server itself is on a loopback host) allows loopback URLs,
    plain http among them; a remote server's documents may not point into this machine."""
    if not isinstance(url, str) or not url:
        raise OAuthError(f"{what} is missing or not a string")
    if len(url) > MAX_URL_CHARS:
        raise OAuthError(f"{what} is longer than {MAX_URL_CHARS} characters")
    if any(not 0x21 <= ord(ch) <= 0x7E for ch in url):
        # Spaces, controls (terminal escapes among them), non-ASCII: never in a URL on the wire.
        raise OAuthError(f"{what} has characters a URL cannot have")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise OAuthError(f"{what} is not a valid URL") from None
    if not parts.hostname:
        raise OAuthError(f"{what} is not an absolute URL")
    if parts.fragment or url.endswith("#"):
        raise OAuthError(f"{what} has a fragment")
    if is_odd_numeric_host(url):
        raise OAuthError(f"{what} names an IP address in a form other than dotted decimal")
    loopback = is_loopback(url)
    if loopback and not local:
        raise OAuthError(f"{what} points to this machine, but the MCP server is elsewhere")
    if parts.scheme == "https" or (parts.scheme == "http" and loopback):
        return url
    raise OAuthError(f"{what} must be an https URL (plain http only on a loopback host)")


async def request_json(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    what: str,
    headers: Iterable[tuple[str, str]] = (),
    content: bytes | None = None,
    json_body: object = None,
    seconds: float = ANSWER_TIMEOUT,
) -> JsonAnswer:
    """One request; its answer read up to :data:`MAX_ANSWER_BYTES` (OAuthError past that, or
    on a network failure, or after ``seconds``), the body parsed as JSON if it is."""
    # identity: the bound is on the bytes that arrive, not on what they would inflate to.
    sent_headers = {"Accept": "application/json", "Accept-Encoding": "identity", **dict(headers)}
    if json_body is not None:
        content = json.dumps(json_body).encode()
        sent_headers["Content-Type"] = "application/json"
    chunks: list[bytes] = []
    size = 0
    try:
        with trio.fail_after(seconds):
            request = http.build_request(
                method, url, headers=sent_headers, content=content, timeout=httpx.Timeout(seconds)
            )
            response = await http.send(request, stream=True, follow_redirects=False)
            try:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
                    raise OAuthError(f"{what}: the answer is larger than {MAX_ANSWER_BYTES} bytes")
                # Past the bound, the read is cancelled rather than left: the cancellation then
                # ends httpx's nested async generators from inside (a loop left early would
                # leave them suspended, for the garbage collector to find).
                too_big = False
                with trio.CancelScope() as stop:
                    async for chunk in response.aiter_raw():
                        if too_big:
                            continue
                        size += len(chunk)
                        if size > MAX_ANSWER_BYTES:
                            too_big = True
                            chunks.clear()
                            stop.cancel()
                            continue
                        chunks.append(chunk)
                if too_big:
                    raise OAuthError(f"{what}: the answer is larger than {MAX_ANSWER_BYTES} bytes")
            finally:
                await response.aclose()
    except trio.TooSlowError:
        raise OAuthError(f"{what}: no answer within {math.ceil(seconds)} s") from None
    except httpx.HTTPError as exc:
        raise OAuthError(f"{what}: {type(exc).__name__} talking to {_origin(url)}") from None
    body = b"".join(chunks)
    parsed: object = None
    if body:
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            parsed = None
    return JsonAnswer(response.status_code, parsed, dict(response.headers))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
