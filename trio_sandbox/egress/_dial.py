"""Dialing out for a client: decide, resolve, vet, dial, report; the outbound connection it opens.

Both front ends (HTTP and SOCKS5) go through :meth:`Dialer.open`, so every destination is
judged, logged and counted the same way whatever protocol asked for it.
"""

from __future__ import annotations

import types

import attrs
import trio

from ..concurrency import BufferedSocket, relay_tunnel
from ._events import AuditEntry, EgressEvent, EgressStats, EventSink
from ._names import IPAddress
from ._policy import Allowed, Destination, EgressPolicy, RefusalKind, Refused
from ._routing import Connected, Resolver, Route, dial, find_route


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
    policy: EgressPolicy
    resolver: Resolver
    events: EventSink
    connect_timeout: float

    def judge(self, protocol: str, host: str, port: int) -> Allowed | Refused:
        """The policy's decision alone; a refusal is reported here."""
        decision = self.policy.decide(host, port)
        if isinstance(decision, Refused):
            self.events.emit(EgressEvent(protocol, decision.target, refusal=decision))
        return decision

    async def open(self, protocol: str, allowed: Allowed) -> OutboundConnection | Refused:
        """Resolve, vet and dial ``allowed``'s destination within the connect timeout."""
        destination = allowed.destination
        route: Route | Refused | None = None
        outcome: Connected | Refused | None = None
        with trio.move_on_after(self.connect_timeout):
            route = await find_route(self.policy, allowed, self.resolver)
            outcome = route if isinstance(route, Refused) else await dial(route)
        rule = allowed.rule.entry
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
