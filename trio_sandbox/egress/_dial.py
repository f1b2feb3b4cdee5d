"""Dialing out for a client: decide, resolve, vet, dial, report; the outbound connection it opens.

Both front ends (HTTP and SOCKS5) go through :meth:`Dialer.open`, so every destination is
judged, logged and counted the same way whatever protocol asked for it.
"""

from __future__ import annotations

import types

import attrs
import trio

from ..concurrency import BufferedSocket, relay_tunnel
from ._errors import shown
from ._events import AuditEntry, EgressEvent, EgressStats, EventSink
from ._guard import SecretGuard, wait_first_flight
from ._names import IPAddress
from ._policy import Allowed, Destination, EgressPolicy, RefusalKind, Refused
from ._routing import Connected, Resolver, Route, dial, find_route


def shown_host(host: str) -> str:
    """A host as a refusal's target names it: as given, escaped if it needs to be."""
    quoted = shown(host)
    return host if quoted[1:-1] == host else quoted


@attrs.define(eq=False)
class OutboundConnection:
    """The outbound connection to a vetted address of an allowed destination; counted while
    open (``EgressStats.upstreams_open``, a name of the report channel)."""

    socket: BufferedSocket
    allowed: Allowed
    address: IPAddress
    entry: AuditEntry
    _stats: EgressStats
    _open: bool = True

    @property
    def destination(self) -> Destination:
        return self.allowed.destination

    def count_sent(self, size: int) -> None:
        self.entry.counters.bytes_sent += size

    def count_received(self, size: int) -> None:
        self.entry.counters.bytes_received += size

    async def tunnel(self, client: BufferedSocket, *, zero_copy: bool) -> None:
        """Relay both ways between ``client`` and this connection until both have closed."""
        await relay_tunnel(
            client,
            self.socket,
            sent=self.count_sent,
            received=self.count_received,
            zero_copy=zero_copy,
        )

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            self._stats.upstreams_open -= 1
            self._stats.changed(self.entry)  # its bytes, now final
        await self.socket.stream.aclose()

    async def __aenter__(self) -> OutboundConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        await self.aclose()


@attrs.define(eq=False)
class Dialer:
    """``guard``: the placeholders of inject_secrets, refused where they are not replaced."""

    policy: EgressPolicy
    resolver: Resolver
    events: EventSink
    connect_timeout: float
    guard: SecretGuard | None = None

    def judge(self, protocol: str, host: str, port: int) -> Allowed | Refused:
        """The policy's decision alone (a placeholder in the host name first); a refusal is
        reported here."""
        decision: Allowed | Refused | None = None
        if self.guard is not None:
            decision = self.guard.host(f"{shown_host(host)}:{port}", host, "the host name")
        if decision is None:
            decision = self.policy.decide(host, port)
        if isinstance(decision, Refused):
            self.refuse(protocol, decision)
        return decision

    def refuse(self, protocol: str, refused: Refused, rule: str | None = None) -> Refused:
        """Report a refusal decided outside the policy (a placeholder where it must not go)."""
        self.events.emit(EgressEvent(protocol, refused.target, refusal=refused, rule=rule))
        return refused

    async def open(self, protocol: str, allowed: Allowed) -> OutboundConnection | Refused:
        """Resolve, vet and dial ``allowed``'s destination within the connect timeout."""
        destination = allowed.destination
        route: Route | Refused | None = None
        outcome: Connected | Refused | None = None
        rule = allowed.rule.entry
        with trio.move_on_after(self.connect_timeout):
            if self.guard is not None:
                by_address = await self.guard.by_address(destination)
                if by_address is not None:
                    return self.refuse(protocol, by_address, rule)
            route = await find_route(self.policy, allowed, self.resolver)
            outcome = route if isinstance(route, Refused) else await dial(route)
        if outcome is None:
            outcome = Refused(
                str(destination),
                RefusalKind.UNRESOLVABLE if route is None else RefusalKind.UNREACHABLE,
                ("no answer from the resolver" if route is None else "no connection")
                + f" within {self.connect_timeout:g} s",
            )
        if isinstance(outcome, Refused):
            self.events.emit(EgressEvent(protocol, str(destination), refusal=outcome, rule=rule))
            return outcome
        entry = self.events.emit(
            EgressEvent(protocol, str(destination), outcome.address, rule=rule)
        )
        self.events.stats.upstreams_open += 1
        return OutboundConnection(
            BufferedSocket(outcome.stream), allowed, outcome.address, entry, self.events.stats
        )

    async def screen_tunnel(
        self, protocol: str, client: BufferedSocket, upstream: OutboundConnection
    ) -> Refused | None:
        """Before a plain tunnel relays: the client's first bytes, if it speaks first, looked
        at for a placeholder (reported here when refused). Nothing to do without a guard."""
        if self.guard is None:
            return None
        with trio.move_on_after(self.guard.first_flight_wait):
            await wait_first_flight(client, upstream.socket)
        data = b"" if upstream.socket.buffer else bytes(client.buffer)
        refused = self.guard.first_flight(data, upstream.destination) if data else None
        if refused is not None:
            self.refuse(protocol, refused, upstream.allowed.rule.entry)
        return refused
