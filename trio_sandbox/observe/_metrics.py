"""Prometheus metrics: a sink of :class:`~._observer.Observer` that counts what its records say.

Everything is kept in the sink's own ``CollectorRegistry`` (never prometheus-client's global
one): two sandboxes in one process, or two tests, count apart. The sandbox's state as it is now
(generation, spares, memory and pids against their limits) is read at each scrape from
:attr:`Metrics.gauges`, a callable the sandbox sets.

Label values are bounded whatever clients and upstreams do. A tool's name is a label only when
an upstream claimed it (a call that reached no upstream counts as ``tool="(unrouted)"``, as the
name is whatever the client sent); at most ``max_tools`` (upstream, tool) pairs are labelled,
later ones count as ``tool="(other)"``; upstreams, sandboxes and placeholder rules are bounded
the same way. A label value is at most :data:`MAX_LABEL_CHARS` characters, with control,
format and unpaired surrogate characters replaced (``\\ufffd``): valid UTF-8, one line, shown
as it reads.
"""

from __future__ import annotations

import logging
import math
import time
import unicodedata
from collections.abc import Callable, Hashable, Iterator
from typing import Final

import attrs
from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from ..program import VERSION
from ._records import (
    CallKind,
    CallRecord,
    EgressRecord,
    EgressVerdict,
    LifecyclePhase,
    LifecycleRecord,
    Record,
    SandboxGauges,
)

logger = logging.getLogger("trio_sandbox.observe")

NAMESPACE: Final = "trio_sandbox"
# How old the gauges a scrape shows may be (seconds).
GAUGES_MAX_AGE: Final = 1.0
# Kinds of call whose labelled children are kept at hand (past it, they are looked up).
MAX_CALL_CHILDREN: Final = 4096
# A tool call takes from a millisecond (a cached answer) to minutes (a build, a test run).
DURATION_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
DEFAULT_MAX_TOOLS: Final = 500
MAX_UPSTREAMS: Final = 64
MAX_SANDBOXES: Final = 64
MAX_RULES: Final = 256
MAX_LABEL_CHARS: Final = 128
OTHER: Final = "(other)"
UNROUTED: Final = "(unrouted)"
NO_UPSTREAM: Final = "(none)"
EMPTY: Final = "(empty)"
LIMITS: Final = ("memory", "pids", "output")
DIRECTIONS: Final = ("up", "down")

# Control, format (bidi overrides, zero-width), unpaired surrogate and line or paragraph
# separator characters: a label value must encode as UTF-8 and should read as what it is.
_UNSHOWABLE: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def label_value(text: str) -> str:
    """``text`` as a label value: at most :data:`MAX_LABEL_CHARS`, one readable UTF-8 line."""
    if not text:
        return EMPTY
    if len(text) > MAX_LABEL_CHARS:
        text = text[: MAX_LABEL_CHARS - 1] + "…"
    if text.isascii() and text.isprintable():
        return text  # the usual tool name, at no cost
    return "".join("\ufffd" if unicodedata.category(c) in _UNSHOWABLE else c for c in text)


@attrs.define(eq=False)
class _Bound:
    """At most ``limit`` distinct keys are admitted; the first ones seen stay admitted."""

    limit: int
    _seen: set[Hashable] = attrs.field(factory=set)

    def admit(self, key: Hashable) -> bool:
        if key in self._seen:
            return True
        if len(self._seen) >= self.limit:
            return False
        self._seen.add(key)
        return True

    def label(self, text: str) -> str:
        value = label_value(text)
        return value if self.admit(value) else OTHER


def _gauge_families(gauges: SandboxGauges) -> list[Metric]:
    """The gauges' families, leaving out what cannot be told here (None)."""
    values: list[tuple[str, str, int | None]] = [
        (
            "sandbox_generation",
            "The generation of the main sandbox (each respawn starts the next).",
            gauges.generation,
        ),
        (
            "ready_spares",
            "Warm spare sandboxes started and ready to be swapped in.",
            gauges.ready_spares,
        ),
        (
            "session_sandboxes",
            "Sandboxes of their own that clients' sessions hold now.",
            gauges.session_sandboxes,
        ),
        (
            "sandbox_memory_bytes",
            "Memory the main sandbox uses now.",
            gauges.memory_bytes,
        ),
        (
            "sandbox_memory_limit_bytes",
            "The main sandbox's memory limit.",
            gauges.memory_limit_bytes,
        ),
        (
            "sandbox_pids",
            "Processes and threads in the main sandbox now.",
            gauges.pids,
        ),
        (
            "sandbox_pids_limit",
            "The main sandbox's limit on processes and threads.",
            gauges.pids_limit,
        ),
    ]
    families: list[Metric] = []
    for name, documentation, value in values:
        if value is not None:  # None: cannot be told here (no cgroup to read, no limit set)
            families.append(GaugeMetricFamily(f"{NAMESPACE}_{name}", documentation, value))
    return families


@attrs.frozen
class _Scrape:
    """One scrape: the registry's families, then the gauges as they were read for it."""

    registry: CollectorRegistry
    gauges: list[Metric]

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()
        yield from self.gauges


@attrs.define(eq=False)
class Metrics:
    """The metrics of one sandbox (a :class:`~._observer.Sink`); serve them with
    :func:`~._metrics_http.serve_metrics`::

        metrics = Metrics()
        observer = Observer(sinks=[metrics, ...])
        metrics.gauges = sandbox_gauges  # () -> SandboxGauges
        bound = await nursery.start(serve_metrics, metrics, host, port)

    ``gauges``: the sandbox's state, read at each scrape (None: no gauges); called in the event
    loop, so it may read the sandbox's Trio state, and it must be quick. ``registry`` holds
    the counters and histograms (thread-safe, as prometheus-client's are); :meth:`scrape` adds
    the gauges."""

    max_tools: int = DEFAULT_MAX_TOOLS
    gauges: Callable[[], SandboxGauges | None] | None = None
    registry: CollectorRegistry = attrs.field(init=False)
    _tools: _Bound = attrs.field(init=False)
    _upstreams: _Bound = attrs.field(init=False, factory=lambda: _Bound(MAX_UPSTREAMS))
    _sandboxes: _Bound = attrs.field(init=False, factory=lambda: _Bound(MAX_SANDBOXES))
    _rules: _Bound = attrs.field(init=False, factory=lambda: _Bound(MAX_RULES))
    _tool_calls: Counter = attrs.field(init=False)
    _tool_call_seconds: Histogram = attrs.field(init=False)
    _reads: Counter = attrs.field(init=False)
    _prompt_gets: Counter = attrs.field(init=False)
    _read_seconds: Histogram = attrs.field(init=False)
    _starts: Counter = attrs.field(init=False)
    _readies: Counter = attrs.field(init=False)
    _respawns: Counter = attrs.field(init=False)
    _stops: Counter = attrs.field(init=False)
    _failures: Counter = attrs.field(init=False)
    _limit_hits: Counter = attrs.field(init=False)
    _egress: Counter = attrs.field(init=False)
    _egress_bytes: Counter = attrs.field(init=False)
    _placeholders: Counter = attrs.field(init=False)
    # (upstream, tool, outcome) as recorded -> the labelled children that count such a call:
    # found once (label checks, the bounds, prometheus-client's lookup), then only counted.
    _gauges_read_at: float = attrs.field(init=False, default=-math.inf)
    _gauge_families: list[Metric] = attrs.field(init=False, factory=list)
    _call_children: dict[tuple[str | None, str, str], tuple[Counter, Histogram]] = attrs.field(
        init=False, factory=dict
    )

    def __attrs_post_init__(self) -> None:
        self._tools = _Bound(self.max_tools)
        registry = self.registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        Info(
            f"{NAMESPACE}_build", "The trio_sandbox that serves these metrics.", registry=registry
        ).info({"version": VERSION})

        def counter(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{NAMESPACE}_{name}", documentation, labels, registry=registry)

        def histogram(name: str, documentation: str, labels: tuple[str, ...]) -> Histogram:
            return Histogram(
                f"{NAMESPACE}_{name}",
                documentation,
                labels,
                registry=registry,
                buckets=DURATION_BUCKETS,
            )

        self._tool_calls = counter(
            "tool_calls_total",
            "Tool calls through the proxy, by upstream, tool and outcome"
            " (ok, tool_error: the tool reported a failure, failed: no result).",
            ("upstream", "tool", "outcome"),
        )
        self._tool_call_seconds = histogram(
            "tool_call_duration_seconds",
            "How long tool calls took, from the client's request to the proxy's answer.",
            ("upstream", "tool"),
        )
        self._prompt_gets = counter(
            "prompt_gets_total",
            "Prompts fetched through the proxy (they run their upstream's code), by upstream and"
            " outcome.",
            ("upstream", "outcome"),
        )
        self._reads = counter(
            "resource_reads_total",
            "Resource reads through the proxy, by upstream and outcome.",
            ("upstream", "outcome"),
        )
        self._read_seconds = histogram(
            "resource_read_duration_seconds",
            "How long resource reads took.",
            ("upstream",),
        )
        self._starts = counter("sandbox_starts_total", "Sandbox generations started.", ("sandbox",))
        self._readies = counter(
            "sandbox_ready_total", "Sandbox generations that came to serve.", ("sandbox",)
        )
        self._respawns = counter(
            "sandbox_respawns_total",
            "Sandboxes that went down and were started again (the audit log says why).",
            ("sandbox",),
        )
        self._stops = counter("sandbox_stops_total", "Sandboxes stopped.", ("sandbox",))
        self._failures = counter(
            "sandbox_failures_total",
            "Sandboxes whose respawning gave up.",
            ("sandbox",),
        )
        self._limit_hits = counter(
            "limit_hits_total",
            "Limits enforced: memory and pids by the kernel, output by the proxy"
            " (a tool result shortened).",
            ("limit",),
        )
        self._egress = counter(
            "egress_connections_total",
            "The sandbox's connections to the network, by the egress proxy's verdict"
            " (allowed, refused, failed: allowed but not reached).",
            ("verdict",),
        )
        self._egress_bytes = counter(
            "egress_bytes_total",
            "Bytes the sandbox's connections carried: up to the destinations, down from them.",
            ("direction",),
        )
        self._placeholders = counter(
            "redaction_placeholders_total",
            "Placeholders redaction made for new secret values, by the rule that found them.",
            ("rule",),
        )
        # Known label values start at zero, so a rate over them is defined from the start.
        for limit in LIMITS:
            self._limit_hits.labels(limit)
        for verdict in EgressVerdict:
            self._egress.labels(verdict.value)
        for direction in DIRECTIONS:
            self._egress_bytes.labels(direction)

    def scrape(self) -> _Scrape:
        """Everything one scrape shows, the gauges read in the event loop at most once per
        :data:`GAUGES_MAX_AGE` (reading them may walk /proc: many scrapers must not stall the
        loop): render it with prometheus-client's encoders, in a worker thread if need be."""
        now = time.monotonic()
        if self.gauges is not None and now - self._gauges_read_at >= GAUGES_MAX_AGE:
            self._gauges_read_at = now
            try:
                gauges = self.gauges()
                self._gauge_families = _gauge_families(gauges) if gauges is not None else []
            except Exception:
                # A scrape still gets the counters; the gauges come back at the next read.
                self._gauge_families = []
                logger.exception("reading the sandbox's gauges for a scrape failed")
        return _Scrape(self.registry, self._gauge_families)

    # The Sink protocol.

    def record(self, record: Record) -> None:
        if isinstance(record, CallRecord):
            self._call(record)
        elif isinstance(record, LifecycleRecord):
            self._lifecycle(record)
        else:
            self._egress_record(record)

    def placeholder_made(self, rule: str) -> None:
        self._placeholders.labels(self._rules.label(rule)).inc()

    def output_shortened(self, upstream: str | None) -> None:
        self._limit_hits.labels("output").inc()

    # Records.

    def _call(self, record: CallRecord) -> None:
        duration = max(0.0, record.duration)
        if record.upstream is None:
            upstream = NO_UPSTREAM
        else:
            upstream = self._upstreams.label(record.upstream)
        outcome = record.outcome.value
        if record.kind is CallKind.PROMPT_GET:
            self._prompt_gets.labels(upstream, outcome).inc()
            return
        if record.kind is CallKind.RESOURCE_READ:
            self._reads.labels(upstream, outcome).inc()
            self._read_seconds.labels(upstream).observe(duration)
            return
        # An unrouted call's name is whatever the client sent: not a key of its own.
        key = (record.upstream, record.name if record.upstream is not None else "", outcome)
        children = self._call_children.get(key)
        if children is None:
            if record.upstream is None:
                tool = UNROUTED
            else:
                tool = label_value(record.name)
                if not self._tools.admit((upstream, tool)):
                    tool = OTHER
            children = (
                self._tool_calls.labels(upstream, tool, outcome),
                self._tool_call_seconds.labels(upstream, tool),
            )
            if len(self._call_children) < MAX_CALL_CHILDREN:
                self._call_children[key] = children
        calls, seconds = children
        calls.inc()
        seconds.observe(duration)

    def _lifecycle(self, record: LifecycleRecord) -> None:
        phase = record.phase
        if phase is LifecyclePhase.LIMIT_HIT:
            limit = record.limit if record.limit in LIMITS else OTHER
            count = record.count if record.count is not None else 1
            if count > 0:
                self._limit_hits.labels(limit).inc(count)
            return
        counter = {
            LifecyclePhase.START: self._starts,
            LifecyclePhase.READY: self._readies,
            LifecyclePhase.RESPAWN: self._respawns,
            LifecyclePhase.STOP: self._stops,
            LifecyclePhase.FAILED: self._failures,
        }[phase]
        counter.labels(self._sandboxes.label(record.sandbox)).inc()

    def _egress_record(self, record: EgressRecord) -> None:
        # The warden reports these; a count or size below zero counts as none, never as a
        # crash of the sink (a counter refuses to go down).
        self._egress.labels(record.verdict.value).inc(max(0, record.count))
        self._egress_bytes.labels("up").inc(max(0, record.bytes_up))
        self._egress_bytes.labels("down").inc(max(0, record.bytes_down))
