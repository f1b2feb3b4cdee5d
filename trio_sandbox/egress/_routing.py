"""From an allowed destination to a connected socket: resolve on the host, vet, dial.

The name is resolved once, every address it resolved to is vetted by the policy, and only those
vetted addresses are dialed (never the name again), so a DNS answer that changes between the
check and the connect cannot lead anywhere the check did not see.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeAlias

import attrs
import trio

from ._names import IPAddress, format_destination
from ._policy import Allowed, EgressPolicy, RefusalKind, Refused

Resolver: TypeAlias = Callable[[str], Awaitable[Sequence[IPAddress]]]
# Happy Eyeballs (RFC 8305): the next address is tried after this delay or the last failure.
ATTEMPT_DELAY: Final = 0.25


async def system_resolver(name: str) -> list[IPAddress]:
    """The host's own resolution of ``name`` (``getaddrinfo``), addresses in its order."""
    infos = await trio.socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


@attrs.frozen
class Route:
    """An allowed destination and the vetted addresses it may be reached at."""

    allowed: Allowed
    addresses: tuple[IPAddress, ...]


async def find_route(policy: EgressPolicy, allowed: Allowed, resolver: Resolver) -> Route | Refused:
    destination = allowed.destination
    if isinstance(destination.host, str):
        try:
            addresses = tuple(dict.fromkeys(await resolver(destination.host)))
        except OSError as error:
            return Refused(
                str(destination),
                RefusalKind.UNRESOLVABLE,
                f"cannot resolve {destination.host}: {error.strerror or error}",
            )
        if not addresses:
            return Refused(
                str(destination), RefusalKind.UNRESOLVABLE, f"{destination.host} has no address"
            )
    else:
        addresses = (destination.host,)
    for address in addresses:
        refusal = policy.check_address(allowed, address)
        if refusal is not None:
            return refusal
    return Route(allowed, addresses)


@attrs.frozen
class Connected:
    stream: trio.SocketStream
    address: IPAddress


async def dial(route: Route) -> Connected | Refused:
    """Connect to the first of the route's addresses that answers (staggered, RFC 8305). The
    caller bounds the time it may take."""
    port = route.allowed.destination.port
    failures: list[tuple[IPAddress, OSError]] = []
    winner: Connected | None = None

    async def attempt(address: IPAddress, failed: trio.Event) -> None:
        nonlocal winner
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        try:
            await sock.connect((str(address), port))
        except OSError as error:
            sock.close()
            failures.append((address, error))
            failed.set()
            return
        except BaseException:
            sock.close()
            raise
        if winner is not None:
            sock.close()
            return
        winner = Connected(trio.SocketStream(sock), address)
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for address in route.addresses:
            failed = trio.Event()
            nursery.start_soon(attempt, address, failed)
            with trio.move_on_after(ATTEMPT_DELAY):
                await failed.wait()
    if winner is not None:
        return winner
    address, error = failures[-1]
    tried = ", ".join(str(address) for address in route.addresses)
    # The sandbox learns that it failed and how, not where the name led (the host's log does).
    return Refused(
        str(route.allowed.destination),
        RefusalKind.UNREACHABLE,
        f"cannot connect: {os.strerror(error.errno) if error.errno else error}",
        error_code=error.errno,
        detail=f"to {format_destination(address, port)}"
        + (f" (tried {tried})" if len(route.addresses) > 1 else ""),
    )
