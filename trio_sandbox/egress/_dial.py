"""Dialing out for a client: decide, resolve, vet, dial, report; the outbound connection it opens.

Both front ends (HTTP and SOCKS5) go through :meth:`Dialer.open`, so every destination is
judged, logged and counted the same way whatever protocol asked for it.
"""

from __future__ import annotations

import types

import attrs
import trio

from ..concurrency import BufferedSocket, relay_tunnel
from ._connections import ConnectionUse, Moment
from ._errors import shown
from ._events import AuditEntry, EgressEvent, EventSink
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
    open (``EgressStats.upstreams_open``, a name of the report channel). ``use``: what it
    carries for the connection record being made (the current request's, for HTTP)."""

    socket: BufferedSocket
    allowed: Allowed
    address: IPAddress
    entry: AuditEntry
    _events: EventSink
    use: ConnectionUse
    _open: bool = True

    @property
    def destination(self) -> Destination:
        return self.allowed.destination

    def count_sent(self, size: int) -> None:
        self.entry.counters.bytes_sent += size
        self.use.bytes_up += size

    def count_received(self, size: int) -> None:
        self.entry.counters.bytes_received += size
        self.use.bytes_down += size

    def end_use(self) -> None:
        """The current use is over: its connection record (once)."""
        self._events.connections.close(self.use)

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
        try:
            if self._open:
                self._open = False
                stats = self._events.stats
                stats.upstreams_open -= 1
                stats.changed(self.entry)  # its bytes, now final
                self.end_use()
        finally:
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

    def refuse(
        self,
        protocol: str,
        refused: Refused,
        rule: str | None = None,
        *,
        on: OutboundConnection | None = None,
        begun: Moment | None = None,
    ) -> Refused:
        """Report a refusal decided outside the policy (a placeholder where it must not go):
        ``on`` the connection it stops (allowed first), or at a decision ``begun`` then."""
        event = EgressEvent(protocol, refused.target, refusal=refused, rule=rule)
        self.events.emit(event, begun=begun, on=None if on is None else on.use)
        return refused

    async def open(self, protocol: str, allowed: Allowed) -> OutboundConnection | Refused:
        """Resolve, vet and dial ``allowed``'s destination within the connect timeout."""
        begun = Moment.now()
        destination = allowed.destination
        route: Route | Refused | None = None
        outcome: Connected | Refused | None = None
        rule = allowed.rule.entry
        with trio.move_on_after(self.connect_timeout):
            if self.guard is not None:
                by_address = await self.guard.by_address(destination)
                if by_address is not None:
                    return self.refuse(protocol, by_address, rule, begun=begun)
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
            event = EgressEvent(protocol, str(destination), refusal=outcome, rule=rule)
            self.events.emit(event, begun=begun)
            return outcome
        event = EgressEvent(protocol, str(destination), outcome.address, rule=rule)
        entry = self.events.emit(event)
        self.events.stats.upstreams_open += 1
        return OutboundConnection(
            BufferedSocket(outcome.stream),
            allowed,
            outcome.address,
            entry,
            self.events,
            self.events.opened(event, begun),
        )

    def reuse(self, protocol: str, kept: OutboundConnection) -> None:
        """A kept connection carries another request to its destination: allowed again (each
        request is judged on its own), and a connection record of its own from now on."""
        kept.end_use()
        event = EgressEvent(
            protocol, str(kept.destination), kept.address, rule=kept.allowed.rule.entry
        )
        self.events.emit(event)
        kept.use = self.events.opened(event, Moment.now())

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
            self.refuse(protocol, refused, upstream.allowed.rule.entry, on=upstream)
        return refused
