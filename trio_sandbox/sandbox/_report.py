"""What the warden reports on its report channel, as the host keeps it for ``status``.

The channel is a pipe the host made and passed to the warden alone (``--report-fd``): nothing in
the sandbox can write to it, unlike the warden's stdout and stderr, which the host only logs. One
JSON object per line: ``{"limits": {...}}`` (the limits, what enforces them, the cgroups),
``{"warning": "..."}`` (for the user), ``{"egress": {...}}`` (the egress audit's changed entries:
per allow-list entry, per allowed destination, per refused destination), ``{"connection":
{...}}`` (one connection of the sandbox, or a window's sum of them: ``egress.ConnectionRecord``,
bounded in number by the warden). The tables are bounded here too, as in the proxy, whatever the
lines say; a connection whose fields have the wrong type or are out of bounds is dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, TypeAlias

import attrs

from ..egress import AUDIT_TABLES, MAX_DESTINATIONS, ConnectionRecord, audit_totals
from ..observe import EgressRecord

logger = logging.getLogger("trio_sandbox.sandbox")

_OPEN_COUNTS = ("connections_open", "upstreams_open")

EgressCallback: TypeAlias = Callable[[EgressRecord], None]


def egress_record(
    connection: ConnectionRecord, sandbox: str, generation: int | None
) -> EgressRecord:
    """A connection the warden reported, as the audit and the metrics take it."""
    return EgressRecord(
        verdict=connection.verdict,
        at=connection.at,
        protocol=connection.protocol,
        target=connection.target,
        sandbox=sandbox,
        generation=generation,
        rule=connection.rule,
        reason=connection.reason,
        bytes_up=connection.bytes_up,
        bytes_down=connection.bytes_down,
        duration=connection.duration,
        count=connection.count,
    )


@attrs.define(eq=False)
class WardenReport:
    """The reports of one warden (one sandbox generation). ``on_egress`` gets each connection
    the warden reports (it must not raise), as the sandbox ``sandbox``'s generation
    ``generation`` (which whoever learns them may set as they change: a spare is moved to
    another sandbox, a generation is numbered once it serves)."""

    on_egress: EgressCallback | None = None
    sandbox: str = "sandbox"
    generation: int | None = None
    limits: dict[str, Any] | None = None
    egress: dict[str, dict[str, Any]] = attrs.field(
        factory=lambda: {table: {} for table in AUDIT_TABLES}
    )
    open_counts: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(_OPEN_COUNTS, 0))

    def read_line(self, line: str) -> None:
        """One line of the report channel; anything else than a report is ignored."""
        message: object = None
        # Not JSON, a number too long to read, or nested too deep to.
        with contextlib.suppress(ValueError, RecursionError):
            message = json.loads(line)
        if not isinstance(message, dict) or len(message) != 1:
            return
        ((kind, value),) = message.items()
        if kind == "limits" and isinstance(value, dict):
            self.limits = value
        elif kind == "warning" and isinstance(value, str):
            logger.warning("warden: %s", value)
        elif kind == "egress" and isinstance(value, dict):
            self._merge_egress(value)
        elif kind == "connection" and self.on_egress is not None:
            connection = ConnectionRecord.from_report(value)
            if connection is not None:
                self.on_egress(egress_record(connection, self.sandbox, self.generation))

    def _merge_egress(self, changes: dict[str, Any]) -> None:
        for name in _OPEN_COUNTS:
            if isinstance(changes.get(name), int):
                self.open_counts[name] = changes[name]
        for table, entries in self.egress.items():
            changed = changes.get(table)
            if not isinstance(changed, dict):
                continue
            for key, counters in changed.items():
                if not isinstance(counters, dict):
                    continue
                if key not in entries and len(entries) > MAX_DESTINATIONS:
                    continue  # the warden bounds them (then counts in "(other)"); so do we
                entries[key] = counters

    def network_status(self) -> dict[str, Any]:
        """The audit for ``status``: the three tables, their totals, what is open now."""
        tables = {table: dict(entries) for table, entries in self.egress.items()}
        return {**tables, "totals": audit_totals(tables), **self.open_counts}
