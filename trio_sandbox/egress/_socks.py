"""The SOCKS5 front end (RFC 1928): no authentication, CONNECT only, names resolved here.

A client that sends a DOMAINNAME (``socks5h://``, ``curl --socks5-hostname``) has the name
judged and resolved by the proxy on the host like any other request; a client that resolved the
name itself sends an address, which only an IP rule can allow. Refusals use the RFC's reply
codes, which is all a SOCKS client can show.
"""

from __future__ import annotations

import errno
import ipaddress
from typing import Final

import attrs

from ..concurrency import BufferedSocket
from ._dial import Dialer, OutboundConnection
from ._errors import SocksError
from ._policy import RefusalKind, Refused

VERSION: Final = 5
METHOD_NO_AUTH: Final = 0x00
METHOD_NONE_ACCEPTABLE: Final = 0xFF
COMMAND_CONNECT: Final = 0x01
ADDRESS_IPV4: Final = 0x01
ADDRESS_DOMAIN: Final = 0x03
ADDRESS_IPV6: Final = 0x04

REPLY_SUCCEEDED: Final = 0x00
REPLY_GENERAL_FAILURE: Final = 0x01
REPLY_NOT_ALLOWED: Final = 0x02
REPLY_NETWORK_UNREACHABLE: Final = 0x03
REPLY_HOST_UNREACHABLE: Final = 0x04
REPLY_CONNECTION_REFUSED: Final = 0x05
REPLY_COMMAND_NOT_SUPPORTED: Final = 0x07
REPLY_ADDRESS_TYPE_NOT_SUPPORTED: Final = 0x08

_COMMANDS: Final = {0x01: "CONNECT", 0x02: "BIND", 0x03: "UDP ASSOCIATE"}


@attrs.frozen
class SocksRequest:
    command: int
    host: str
    port: int


def parse_greeting(data: bytes) -> tuple[frozenset[int], int] | None:
    """The offered authentication methods and the bytes they took, or None if incomplete."""
    if len(data) < 2:
        return None
    if data[0] != VERSION:
        raise SocksError(None, f"SOCKS version {data[0]} is not 5")
    end = 2 + data[1]
    if len(data) < end:
        return None
    return frozenset(data[2:end]), end


def parse_request(data: bytes) -> tuple[SocksRequest, int] | None:
    """The request and the bytes it took, or None if incomplete; :class:`SocksError` if bad."""
    if len(data) < 5:
        return None
    version, command, reserved, address_type = data[:4]
    if version != VERSION or reserved != 0:
        raise SocksError(REPLY_GENERAL_FAILURE, f"malformed SOCKS5 request header {data[:4]!r}")
    if command != COMMAND_CONNECT:
        name = _COMMANDS.get(command, f"command {command}")
        raise SocksError(REPLY_COMMAND_NOT_SUPPORTED, f"{name} is not supported, only CONNECT")
    if address_type == ADDRESS_IPV4:
        start, end = 4, 8
    elif address_type == ADDRESS_IPV6:
        start, end = 4, 20
    elif address_type == ADDRESS_DOMAIN:
        start, end = 5, 5 + data[4]
    else:
        raise SocksError(
            REPLY_ADDRESS_TYPE_NOT_SUPPORTED, f"address type {address_type} is not supported"
        )
    if len(data) < end + 2:
        return None
    raw = data[start:end]
    if address_type == ADDRESS_DOMAIN:
        try:
            host = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SocksError(
                REPLY_HOST_UNREACHABLE, f"the domain name {raw!r} is not UTF-8"
            ) from None
    else:
        host = str(ipaddress.ip_address(raw))
    return SocksRequest(command, host, int.from_bytes(data[end : end + 2], "big")), end + 2


def reply(code: int) -> bytes:
    """A reply; the bound address is always 0.0.0.0:0 (the host's addresses stay private)."""
    return bytes((VERSION, code, 0, ADDRESS_IPV4)) + bytes(6)


def reply_for(refusal: Refused) -> int:
    if refusal.kind.by_policy:
        return REPLY_NOT_ALLOWED
    if refusal.kind is RefusalKind.UNREACHABLE:
        if refusal.error_code == errno.ECONNREFUSED:
            return REPLY_CONNECTION_REFUSED
        if refusal.error_code == errno.ENETUNREACH:
            return REPLY_NETWORK_UNREACHABLE
    return REPLY_HOST_UNREACHABLE


async def read_socks_request(client: BufferedSocket) -> SocksRequest | None:
    """The greeting, the method choice (no authentication) and the request; None if the client
    closed first. A bad message is answered (where SOCKS has an answer) and raised."""
    greeting = parse_greeting(bytes(client.buffer))
    while greeting is None:
        if not await client.fill():
            return None
        greeting = parse_greeting(bytes(client.buffer))
    methods, used = greeting
    client.take(used)
    if METHOD_NO_AUTH not in methods:
        await client.stream.send_all(bytes((VERSION, METHOD_NONE_ACCEPTABLE)))
        raise SocksError(None, "the client offers no method but authentication")
    await client.stream.send_all(bytes((VERSION, METHOD_NO_AUTH)))
    try:
        request = parse_request(bytes(client.buffer))
        while request is None:
            if not await client.fill():
                return None
            request = parse_request(bytes(client.buffer))
    except SocksError as error:
        if error.reply is not None:
            await client.stream.send_all(reply(error.reply))
        raise
    parsed, used = request
    client.take(used)
    return parsed


async def connect_socks(
    client: BufferedSocket, request: SocksRequest, dialer: Dialer
) -> OutboundConnection | None:
    """Judge and open the request's destination and answer the client: the upstream to relay
    to, or None after a refusal was sent."""
    decision = dialer.judge("socks5", request.host, request.port)
    outcome = decision if isinstance(decision, Refused) else await dialer.open("socks5", decision)
    if isinstance(outcome, Refused):
        await client.stream.send_all(reply(reply_for(outcome)))
        return None
    try:
        await client.stream.send_all(reply(REPLY_SUCCEEDED))
    except BaseException:
        await outcome.aclose()
        raise
    return outcome
