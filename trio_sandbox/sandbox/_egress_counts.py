"""The egress decisions of a sandbox, counted per destination from the warden's stderr lines.

The warden prints one line per decision (``allowed example.com:443 (93.184.215.14)``,
``refused pypi.example.org:443 (not in allow_domains)``, ``failed ...``); the host counts them
in the generation's report, which ``status`` shows. Bounded like the proxy's own counters.
"""

from __future__ import annotations

from typing import Any

from ..egress import MAX_DESTINATIONS, OTHER_DESTINATIONS, EventLine, Verdict


def count_egress_line(report: dict[str, Any], line: str) -> None:
    """Count one decision line into ``report["egress"]`` (destination -> counters)."""
    event = EventLine.parse(line)
    if event is None:
        return
    destinations: dict[str, dict[str, Any]] = report.setdefault("egress", {})
    target = event.target
    if target not in destinations and len(destinations) >= MAX_DESTINATIONS:
        target = OTHER_DESTINATIONS
    counters = destinations.setdefault(target, {verdict.value: 0 for verdict in Verdict})
    counters[event.verdict.value] += 1
    if event.verdict is not Verdict.ALLOWED:
        counters["last_refusal"] = event.detail
