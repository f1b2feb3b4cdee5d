"""What the warden reports on its report channel, as the host keeps it for ``status``.

The channel is a pipe the host made and passed to the warden alone (``--report-fd``): nothing in
the sandbox can write to it, unlike the warden's stdout and stderr, which the host only logs. One
JSON object per line: ``{"limits": {...}}`` (the limits, what enforces them, the cgroups),
``{"warning": "..."}`` (for the user), ``{"egress": {...}}`` (the egress audit's changed entries:
per allow-list entry, per allowed destination, per refused destination). The tables are bounded
here too, as in the proxy, whatever the lines say.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import attrs

from ..egress import AUDIT_TABLES, MAX_DESTINATIONS, audit_totals

logger = logging.getLogger("trio_sandbox.sandbox")

_OPEN_COUNTS = ("connections_open", "upstreams_open")


@attrs.define(eq=False)
class WardenReport:
    """The reports of one warden (one sandbox generation)."""

    limits: dict[str, Any] | None = None
    egress: dict[str, dict[str, Any]] = attrs.field(
        factory=lambda: {table: {} for table in AUDIT_TABLES}
    )
    open_counts: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(_OPEN_COUNTS, 0))

    def read_line(self, line: str) -> None:
        """One line of the report channel; anything else than a report is ignored."""
        with contextlib.suppress(ValueError):
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
