"""What the proxy tells the host: one event and one log line per decision, and counters.

``allowed example.com:443 (93.184.215.14)``, ``refused pypi.example.org:443 (not in
allow_domains)``, ``failed example.com:443 (cannot connect ...)``. Counters are kept per
destination and read as a JSON-able snapshot; their number is bounded, so a client that asks for
endless distinct names cannot grow the proxy's memory.
"""

from __future__ import annotations

import collections
import enum
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeAlias

import attrs

from ._names import IPAddress
from ._policy import RefusalKind, Refused

logger = logging.getLogger("trio_sandbox.egress")

MAX_DESTINATIONS: Final = 1000
OTHER_DESTINATIONS: Final = "(other)"
INVALID_DESTINATIONS: Final = "(invalid)"
# Refusals kept for the sandbox to ask about (the tool server names them in a command's result).
MAX_RECENT_REFUSALS: Final = 100


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    REFUSED = "refused"  # by the policy, or a destination that is not one
    FAILED = "failed"  # allowed, but it could not be resolved or reached


@attrs.frozen
class EgressEvent:
    """One decision. ``protocol``: ``"connect"``, ``"http"`` or ``"socks5"``."""

    protocol: str
    target: str
    address: IPAddress | None = None
    refusal: Refused | None = None

    @property
    def verdict(self) -> Verdict:
        if self.refusal is None:
            return Verdict.ALLOWED
        if self.refusal.kind in (RefusalKind.UNRESOLVABLE, RefusalKind.UNREACHABLE):
            return Verdict.FAILED
        return Verdict.REFUSED

    def line(self) -> str:
        detail = str(self.address) if self.refusal is None else self.refusal.reason
        return f"{self.verdict.value} {self.target} ({detail})"


@attrs.frozen
class EventLine:
    """An :meth:`EgressEvent.line` read back: by the host, which counts the warden's lines, and
    by the tool server, which names refusals in a command's result."""

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


@attrs.define(eq=False)
class EgressStats:
    """Live counters of one proxy; ``snapshot()`` is what a status page shows.

    ``connections_open``: clients being served; ``upstreams_open``: connections to destinations
    (tunnels, and HTTP connections kept for the next request)."""

    max_destinations: int = MAX_DESTINATIONS
    connections_open: int = 0
    upstreams_open: int = 0
    _destinations: dict[str, DestinationCounters] = attrs.field(factory=dict)
    # (wall-clock time, event line) of the latest refusals and failures, oldest first.
    _recent_refusals: collections.deque[tuple[float, str]] = attrs.field(
        factory=lambda: collections.deque(maxlen=MAX_RECENT_REFUSALS)
    )

    def counters(self, target: str) -> DestinationCounters:
        counters = self._destinations.get(target)
        if counters is None:
            if len(self._destinations) >= self.max_destinations:
                target = OTHER_DESTINATIONS
            counters = self._destinations.setdefault(target, DestinationCounters())
        return counters

    def record(self, event: EgressEvent) -> DestinationCounters:
        refusal = event.refusal
        invalid = refusal is not None and refusal.kind is RefusalKind.BAD_DESTINATION
        counters = self.counters(INVALID_DESTINATIONS if invalid else event.target)
        verdict = event.verdict
        if verdict is Verdict.ALLOWED:
            counters.allowed += 1
        elif verdict is Verdict.REFUSED:
            counters.refused += 1
        else:
            counters.failed += 1
        if refusal is not None:
            counters.last_refusal = refusal.reason
            self._recent_refusals.append((time.time(), event.line()))
        return counters

    def refusals_since(self, since: float) -> Sequence[str]:
        """The event lines of refusals and failures at or after ``since`` (``time.time()``):
        wall-clock time, because the sandbox that asks runs on the same host clock."""
        return [line for at, line in self._recent_refusals if at >= since]

    def snapshot(self) -> dict[str, Any]:
        destinations = {
            target: attrs.asdict(counters) for target, counters in self._destinations.items()
        }
        totals = {
            key: sum(counters[key] for counters in destinations.values())
            for key in ("allowed", "refused", "failed", "bytes_sent", "bytes_received")
        }
        return {
            "connections_open": self.connections_open,
            "upstreams_open": self.upstreams_open,
            "totals": totals,
            "destinations": destinations,
        }


@attrs.define(eq=False)
class EventSink:
    """Where every decision goes: the stats, the log, and the embedder's callback."""

    stats: EgressStats
    callback: EventCallback | None = None

    def emit(self, event: EgressEvent) -> DestinationCounters:
        counters = self.stats.record(event)
        logger.info("%s", event.line())
        if self.callback is not None:
            self.callback(event)
        return counters
