"""One record per connection of the sandbox, for the host's audit, bounded however many it makes.

What "a connection" is, per protocol: a CONNECT tunnel and a SOCKS5 connection are one each,
from the request to the tunnel's close, whatever it carries (an intercepted tunnel of
inject_secrets included: its requests are inside it); an absolute-form HTTP request
(``GET http://host/path``) is one of its own, from its decision to the end of its response,
whether the upstream connection is new or kept from the request before (each request is judged
on its own, and may go elsewhere). A refusal or failure at the decision is a record at once
(``duration``: the time spent deciding, resolving and dialing); an allowed connection's record
comes when it closes, with its bytes (``bytes_up`` to the destination, ``bytes_down`` from it:
what the proxy relayed, TLS records in a plain tunnel, HTTP messages where the proxy reads them).
A connection refused after it was allowed (a placeholder in a tunnel's first bytes, a request
inside an intercepted tunnel) is still one record: refused, with the allow-list entry that let
it open and the reason it was stopped.

The bound: in each window of ``window`` seconds (opened by the first record after the last one
closed) the first ``max_records`` are written at once; the others are summed per (verdict,
protocol, target, rule) into one record each, written when the window closes, with ``count``
and the bytes and durations summed; past ``max_summaries`` distinct keys the rest are summed
per (verdict, protocol) under the target ``(other)``. So at most ``max_records +
max_summaries + 9`` records per window, and every connection is in exactly one of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias, TypeGuard

import attrs
import trio

from ._decision_log import DEFAULT_WINDOW, Windows
from ._policy import Refused, Verdict

OTHER_DESTINATIONS: Final = "(other)"
# The protocols a client asks the proxy in.
PROTOCOLS: Final = ("connect", "http", "socks5")
# Bounds of a record's texts: a name is at most 253 characters, with brackets and a port; a
# refusal reason names a rule or a value cut to 80 characters. Longer ones are cut to these.
MAX_TARGET_CHARS: Final = 300
MAX_REASON_CHARS: Final = 1000
_MAX_COUNTER: Final = 2**63 - 1
DEFAULT_MAX_RECORDS: Final = 100
DEFAULT_MAX_SUMMARIES: Final = 100

_SummaryKey: TypeAlias = tuple[Verdict, str, str, str | None]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@attrs.frozen
class Moment:
    """A point in time on both clocks: the wall clock a record states, trio's for durations."""

    wall: float
    clock: float

    @classmethod
    def now(cls) -> Moment:
        return cls(time.time(), trio.current_time())


@attrs.frozen(kw_only=True)
class ConnectionRecord:
    """One connection (``count`` 1) or the sum of ``count`` of them in one window; ``at`` is
    when the proxy began on it (``time.time()``; the first one's, in a sum), ``duration`` how
    long it lasted in seconds (summed, in a sum); ``rule``: the allow-list entry that let it
    open; ``reason``: why it was refused or failed (as the sandbox was told)."""

    verdict: Verdict
    protocol: str
    target: str
    at: float
    rule: str | None = None
    reason: str | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    duration: float = 0.0
    count: int = 1

    @classmethod
    def decided(
        cls, protocol: str, refused: Refused, rule: str | None, begun: Moment
    ) -> ConnectionRecord:
        """A refusal or failure at the decision, begun at ``begun``."""
        return cls(
            verdict=Verdict.of(refused),
            protocol=protocol,
            target=_cut(refused.target, MAX_TARGET_CHARS),
            at=begun.wall,
            rule=None if rule is None else _cut(rule, MAX_TARGET_CHARS),
            reason=_cut(refused.reason, MAX_REASON_CHARS),
            duration=max(0.0, trio.current_time() - begun.clock),
        )

    def merged(self, other: ConnectionRecord) -> ConnectionRecord:
        """This sum with ``other`` added (its time and texts are this one's)."""
        return attrs.evolve(
            self,
            count=self.count + other.count,
            bytes_up=min(_MAX_COUNTER, self.bytes_up + other.bytes_up),
            bytes_down=min(_MAX_COUNTER, self.bytes_down + other.bytes_down),
            duration=self.duration + other.duration,
        )

    def to_report(self) -> dict[str, Any]:
        """The value of a ``{"connection": ...}`` line of the warden's report channel."""
        return {
            "verdict": self.verdict.value,
            "protocol": self.protocol,
            "target": self.target,
            "at": self.at,
            "rule": self.rule,
            "reason": self.reason,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "duration": round(self.duration, 6),
            "count": self.count,
        }

    @classmethod
    def from_report(cls, value: object) -> ConnectionRecord | None:
        """A :meth:`to_report` value read back; None unless every field has its type and is
        within its bounds (keys it does not know are ignored)."""
        if not isinstance(value, Mapping):
            return None
        verdict, protocol = value.get("verdict"), value.get("protocol")
        target, rule, reason = value.get("target"), value.get("rule"), value.get("reason")
        at, duration = value.get("at"), value.get("duration", 0.0)
        bytes_up, bytes_down = value.get("bytes_up", 0), value.get("bytes_down", 0)
        count = value.get("count", 1)
        if not (
            isinstance(verdict, str)
            and verdict in _VERDICTS
            and isinstance(protocol, str)
            and protocol in PROTOCOLS
            and _text(target, MAX_TARGET_CHARS)
            and (rule is None or _text(rule, MAX_TARGET_CHARS))
            and (reason is None or _text(reason, MAX_REASON_CHARS))
            and _seconds(at)
            and _seconds(duration)
            and _counter(bytes_up)
            and _counter(bytes_down)
            and _counter(count)
            and count >= 1
        ):
            return None
        return cls(
            verdict=_VERDICTS[verdict],
            protocol=protocol,
            target=target,
            at=float(at),
            rule=rule,
            reason=reason,
            bytes_up=bytes_up,
            bytes_down=bytes_down,
            duration=float(duration),
            count=count,
        )


_VERDICTS: Final = {verdict.value: verdict for verdict in Verdict}


def _text(value: object, limit: int) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= limit


def _seconds(value: object) -> TypeGuard[int | float]:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 1e12
    )


def _counter(value: object) -> TypeGuard[int]:
    return type(value) is int and 0 <= value <= _MAX_COUNTER


ConnectionCallback: TypeAlias = Callable[[ConnectionRecord], None]


@attrs.define(eq=False)
class ConnectionUse:
    """A connection being served (for HTTP, one request): what it carried so far, and the
    refusal that stopped it after it was allowed, if one did."""

    protocol: str
    target: str
    rule: str | None
    begun: Moment
    bytes_up: int = 0
    bytes_down: int = 0
    refusal: Refused | None = None
    closed: bool = False

    def refuse(self, refused: Refused) -> None:
        """The first refusal decided on it is its verdict."""
        if self.refusal is None:
            self.refusal = refused

    def record(self) -> ConnectionRecord:
        refusal = self.refusal
        return ConnectionRecord(
            verdict=Verdict.of(refusal),
            protocol=self.protocol,
            target=_cut(self.target, MAX_TARGET_CHARS),
            at=self.begun.wall,
            rule=None if self.rule is None else _cut(self.rule, MAX_TARGET_CHARS),
            reason=None if refusal is None else _cut(refusal.reason, MAX_REASON_CHARS),
            bytes_up=self.bytes_up,
            bytes_down=self.bytes_down,
            duration=max(0.0, trio.current_time() - self.begun.clock),
        )


@attrs.define(eq=False)
class ConnectionLog:
    """Where the records go (``write``; None: nowhere, and nothing is kept); run
    :meth:`serve` to write each window's sums when it ends."""

    write: ConnectionCallback | None
    window: float = DEFAULT_WINDOW
    max_records: int = DEFAULT_MAX_RECORDS
    max_summaries: int = DEFAULT_MAX_SUMMARIES
    # Records written one by one in the current window, and the sums of the others.
    _listed: int = 0
    _sums: dict[_SummaryKey, ConnectionRecord] = attrs.field(factory=dict)
    _windows: Windows = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._windows = Windows(self.window, self._write_sums)

    def open(self, protocol: str, target: str, rule: str | None, begun: Moment) -> ConnectionUse:
        """A connection allowed now, recorded when :meth:`close` is called for it."""
        return ConnectionUse(protocol, target, rule, begun)

    def close(self, use: ConnectionUse) -> None:
        """Its record, once (later calls do nothing)."""
        if not use.closed:
            use.closed = True
            if self.write is not None:
                self.add(use.record())

    def refused(self, protocol: str, refused: Refused, rule: str | None, begun: Moment) -> None:
        """A refusal or failure at the decision."""
        if self.write is not None:
            self.add(ConnectionRecord.decided(protocol, refused, rule, begun))

    def add(self, record: ConnectionRecord) -> None:
        if self.write is None:
            return
        self._windows.open()
        if self._listed < self.max_records:
            self._listed += 1
            self.write(record)
            return
        key: _SummaryKey = (record.verdict, record.protocol, record.target, record.rule)
        if key not in self._sums and len(self._sums) >= self.max_summaries:
            key = (record.verdict, record.protocol, OTHER_DESTINATIONS, None)
            record = attrs.evolve(record, target=OTHER_DESTINATIONS, rule=None, reason=None)
        summed = self._sums.get(key)
        self._sums[key] = record if summed is None else summed.merged(record)

    def close_window(self) -> None:
        """Write the window's sums now and start afresh."""
        self._windows.close()

    def _write_sums(self) -> None:
        sums, self._sums, self._listed = self._sums, {}, 0
        if self.write is not None:
            for record in sums.values():
                self.write(record)

    async def serve(self) -> None:
        """Close each window when it ends (and the last one when cancelled)."""
        await self._windows.serve()
