"""The egress decisions of a sandbox, counted per destination from the warden's stderr lines.

The warden prints one line per decision (``allowed example.com:443 (93.184.215.14)``,
``refused pypi.example.org:443 (not in allow_domains)``, ``failed ...``); the host counts them
in the generation's report, which ``status`` shows. Bounded like the proxy's own counters.
"""

from __future__ import annotations

from typing import Any, Final

MAX_DESTINATIONS: Final = 1000
OTHER_DESTINATIONS: Final = "(other)"
VERDICTS: Final = ("allowed", "refused", "failed")


def count_egress_line(report: dict[str, Any], line: str) -> None:
    """Count one decision line into ``report["egress"]`` (destination -> counters)."""
    verdict, _, rest = line.partition(" ")
    target, _, detail = rest.partition(" ")
    if verdict not in VERDICTS or not target:
        return
    destinations: dict[str, dict[str, Any]] = report.setdefault("egress", {})
    if target not in destinations and len(destinations) >= MAX_DESTINATIONS:
        target = OTHER_DESTINATIONS
    counters = destinations.setdefault(target, {name: 0 for name in VERDICTS})
    counters[verdict] += 1
    if verdict != "allowed":
        counters["last_refusal"] = detail.removeprefix("(").removesuffix(")")
