"""What the proxy tells the host: one event per decision, an audit of counters, a bounded log.

``allowed example.com:443 (93.184.215.14)``, ``refused pypi.example.org:443 (not in
allow_domains)``, ``failed example.com:443 (cannot connect: ...)``. The audit keeps three tables
so that no kind of decision can push another out: per allow-list entry (as many as the policy
has), per destination the policy allowed, and per refused destination; the last two are bounded,
and a destination past the bound is counted under ``(other)`` in its own table. So a sandbox that
asks for endless distinct names grows neither the proxy's memory nor hides where it did go.
"""

from __future__ import annotations

import collections
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeAlias

import attrs
import trio

from ..concurrency import AsyncValue
from ._connections import OTHER_DESTINATIONS, ConnectionLog, ConnectionUse, Moment
from ._decision_log import DecisionLog
from ._names import IPAddress
from ._policy import RefusalKind, Refused, Verdict

logger = logging.getLogger("trio_sandbox.egress")

MAX_DESTINATIONS: Final = 1000
INVALID_DESTINATIONS: Final = "(invalid)"
# Refusals kept for the sandbox to ask about (the tool server names them in a command's result).
MAX_RECENT_REFUSALS: Final = 100
# The audit's tables: per allow-list entry, per allowed destination, per refused destination.
AUDIT_TABLES: Final = ("rules", "destinations", "refused")


@attrs.frozen
class EgressEvent:
    """One decision. ``protocol``: ``"connect"``, ``"http"`` or ``"socks5"``; ``rule``: the
    allow-list entry that allowed the destination (None when the policy refused it)."""

    protocol: str
    target: str
    address: IPAddress | None = None
    refusal: Refused | None = None
    rule: str | None = None

    @property
    def verdict(self) -> Verdict:
        return Verdict.of(self.refusal)

    def public_line(self) -> str:
        """The line the sandbox may read (no address a name resolved to)."""
        detail = str(self.address) if self.refusal is None else self.refusal.reason
        return f"{self.verdict.value} {self.target} ({detail})"

    def line(self) -> str:
        """The host's log line: the public line and, for a refusal, its host-only detail."""
        extra = self.refusal.detail if self.refusal is not None else None
        return self.public_line() + (f" [{extra}]" if extra else "")


@attrs.frozen
class EventLine:
    """An :meth:`EgressEvent.public_line` read back by the tool server, which names refusals in
    a command's result."""

    verdict: Verdict
    target: str
    detail: str

    @classmethod
    def parse(cls, line: str) -> EventLine | None:
        """``allowed example.com:443 (93.184.215.14)``; None if the line is not one."""
        verdict_text, _, rest = line.partition(" ")
        target, _, detail = rest.partition(" ")
        verdict = next((v for v in Verdict if v.value == verdict_text), None)
        if verdict is None or not target or not (detail.startswith("(") and detail.endswith(")")):
            return None
        return cls(verdict, target, detail[1:-1])


EventCallback: TypeAlias = Callable[[EgressEvent], None]


@attrs.define
class DestinationCounters:
    """``bytes_sent`` went to the destination, ``bytes_received`` came from it."""

    allowed: int = 0
    refused: int = 0
    failed: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    last_refusal: str | None = None


@attrs.frozen
class AuditEntry:
    """One entry of the audit: its table, its key there, and its (live) counters."""

    table: str
    key: str
    counters: DestinationCounters


@attrs.define(eq=False)
class EgressStats:
    """Live counters of one proxy; ``snapshot()`` is what a status page shows, and
    ``take_changes()`` what changed since it was last called (for a host that mirrors them).

    ``connections_open``: clients being served; ``upstreams_open``: connections to destinations
    (tunnels, and HTTP connections kept for the next request)."""

    max_destinations: int = MAX_DESTINATIONS
    connections_open: int = 0
    upstreams_open: int = 0
    _tables: dict[str, dict[str, DestinationCounters]] = attrs.field(
        factory=lambda: {table: {} for table in AUDIT_TABLES}
    )
    # (wall-clock time, public event line) of the latest refusals and failures, oldest first.
    _recent_refusals: collections.deque[tuple[float, str]] = attrs.field(
        factory=lambda: collections.deque(maxlen=MAX_RECENT_REFUSALS)
    )
    # Entries changed since take_changes() last ran, and whether there are some.
    _changed: dict[tuple[str, str], DestinationCounters] = attrs.field(factory=dict)
    _pending: AsyncValue[bool] = attrs.field(factory=lambda: AsyncValue(False))

    def _entry(self, table: str, key: str) -> AuditEntry:
        entries = self._tables[table]
        counters = entries.get(key)
        if counters is None:
            # Rules are bounded by the policy; destinations by max_destinations each.
            if table != "rules" and len(entries) >= self.max_destinations:
                key = OTHER_DESTINATIONS
            counters = entries.setdefault(key, DestinationCounters())
        return AuditEntry(table, key, counters)

    def changed(self, entry: AuditEntry) -> None:
        """Mark an entry changed (bytes counted on a connection that closed, say)."""
        self._changed[(entry.table, entry.key)] = entry.counters
        self._pending.value = True

    def record(self, event: EgressEvent) -> AuditEntry:
        """Count ``event``; returns the entry of its destination."""
        refusal = event.refusal
        verdict = event.verdict
        if verdict is Verdict.REFUSED:
            invalid = refusal is not None and refusal.kind is RefusalKind.BAD_DESTINATION
            table, key = "refused", INVALID_DESTINATIONS if invalid else event.target
        else:
            table, key = "destinations", event.target
        entries = [self._entry(table, key)]
        if event.rule is not None:
            entries.append(self._entry("rules", event.rule))
        for entry in entries:
            counters = entry.counters
            if verdict is Verdict.ALLOWED:
                counters.allowed += 1
            elif verdict is Verdict.REFUSED:
                counters.refused += 1
            else:
                counters.failed += 1
            if refusal is not None:
                counters.last_refusal = refusal.reason
            self.changed(entry)
        if refusal is not None:
            self._recent_refusals.append((time.time(), event.public_line()))
        return entries[0]

    def refusals_since(self, since: float) -> Sequence[str]:
        """The public event lines of refusals and failures at or after ``since``
        (``time.time()``): wall-clock time, because the sandbox that asks runs on the same host
        clock."""
        return [line for at, line in self._recent_refusals if at >= since]

    async def wait_changed(self) -> None:
        """Until some entry changed since :meth:`take_changes` last took them all."""
        await self._pending.wait_value(bool)

    def take_changes(self, limit: int) -> dict[str, Any] | None:
        """At most ``limit`` changed entries (the rest stay for the next call) and the open
        counts, or None when nothing changed."""
        if not self._changed:
            return None
        changes: dict[str, Any] = {
            "connections_open": self.connections_open,
            "upstreams_open": self.upstreams_open,
        }
        for table, key in list(itertools.islice(self._changed, limit)):
            counters = self._changed.pop((table, key))
            changes.setdefault(table, {})[key] = attrs.asdict(counters)
        self._pending.value = bool(self._changed)
        return changes

    def snapshot(self) -> dict[str, Any]:
        tables = {
            table: {key: attrs.asdict(counters) for key, counters in entries.items()}
            for table, entries in self._tables.items()
        }
        return {
            "connections_open": self.connections_open,
            "upstreams_open": self.upstreams_open,
            "totals": audit_totals(tables),
            **tables,
        }


def audit_totals(tables: dict[str, dict[str, dict[str, Any]]]) -> dict[str, int]:
    """Every decision and byte once: the destination tables (rules count them again)."""
    return {
        key: sum(
            counters.get(key, 0)
            for table in ("destinations", "refused")
            for counters in tables.get(table, {}).values()
        )
        for key in ("allowed", "refused", "failed", "bytes_sent", "bytes_received")
    }


ChangesCallback: TypeAlias = Callable[[dict[str, Any]], None]
# Audit entries per call of a ChangesCallback (one report line each, well under 64 KiB).
CHANGES_PER_CALL: Final = 32


@attrs.define(eq=False)
class EventSink:
    """Where every decision goes: the stats, the (bounded) log, the embedder's callback, and
    the connection records; ``on_changes`` gets the audit's changes when :meth:`publish`
    runs."""

    stats: EgressStats
    log: DecisionLog
    callback: EventCallback | None = None
    on_changes: ChangesCallback | None = None
    connections: ConnectionLog = attrs.field(factory=lambda: ConnectionLog(None))

    def publish(self) -> None:
        """Hand every change of the audit to ``on_changes`` now."""
        if self.on_changes is None:
            return
        while (changes := self.stats.take_changes(CHANGES_PER_CALL)) is not None:
            self.on_changes(changes)

    async def serve_publishing(self, interval: float) -> None:
        """Publish changes as they come, at most once per ``interval`` (their first at once)."""
        if self.on_changes is None:
            return
        try:
            while True:
                await self.stats.wait_changed()
                self.publish()
                await trio.sleep(interval)
        finally:
            self.publish()  # the last counts, as the proxy stops

    def emit(
        self, event: EgressEvent, *, begun: Moment | None = None, on: ConnectionUse | None = None
    ) -> AuditEntry:
        """Count, log and hand on one decision. A refusal is a connection's record at once
        (begun at ``begun``, default now), or with ``on`` the verdict of that connection, which
        was allowed first; an allowed decision's connection is :meth:`opened` by the caller."""
        entry = self.stats.record(event)
        self.log.add(event.line())
        if self.callback is not None:
            self.callback(event)
        refusal = event.refusal
        if refusal is not None:
            if on is not None:
                on.refuse(refusal)
            else:
                begun = begun or Moment.now()
                self.connections.refused(event.protocol, refusal, event.rule, begun)
        return entry

    def opened(self, event: EgressEvent, begun: Moment) -> ConnectionUse:
        """The connection of an allowed ``event`` (emitted), begun at ``begun``."""
        return self.connections.open(event.protocol, event.target, event.rule, begun)
