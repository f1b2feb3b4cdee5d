"""The one place the proxy and the sandbox report what happens: :class:`Observer`.

Each event becomes one record (:mod:`._records`) handed to every sink (the audit log, the
metrics), and a tool call or read is also a span when traces are on. The observer redacts what it
is given before any sink sees it, so no sink has to, and none can forget to. With no sink and no
tracing (the default) every method returns at once: off costs a branch.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import attrs

from ._records import (
    CallKind,
    CallRecord,
    EgressRecord,
    Failure,
    LifecyclePhase,
    LifecycleRecord,
    Outcome,
    Record,
    SandboxGauges,
)

logger = logging.getLogger("trio_sandbox.observe")

RedactText = Callable[[str], str]
RedactJson = Callable[[Any], Awaitable[Any]]
RedactSmallJson = Callable[[Any], Any | None]


class Sink(Protocol):
    """Where records go (the audit log, the metrics)."""

    def record(self, record: Record) -> None: ...

    def placeholder_made(self, rule: str) -> None:
        """Redaction made a new placeholder for a value ``rule`` found."""

    def output_shortened(self, upstream: str | None) -> None:
        """A tool result was over the output limits and was shortened."""


class CallSpan(Protocol):
    """A call's span: its trace, its W3C ``traceparent``, child spans, its end."""

    @property
    def trace_id(self) -> str | None:
        """The trace's id, 32 hex digits (None: the span has no valid context)."""

    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` of this span (None: the span has no valid context)."""

    def child(self, name: str) -> Any:
        """A context manager: a child span of this call for the block (``redact``,
        ``upstream``)."""

    def end(
        self, outcome: Outcome, failure: Failure | None, upstream: str | None = None
    ) -> None: ...


class Tracing(Protocol):
    """Spans for calls and for a sandbox's life (OpenTelemetry, :mod:`._tracing`)."""

    def start_call(
        self,
        kind: CallKind,
        name: str,
        *,
        upstream: str | None,
        client: str | None,
        parent: str | None,
        session: str | None = None,
    ) -> CallSpan:
        """A call's span, a child of ``parent`` (a client's ``traceparent``) when it is one;
        ``session`` is the session's digest (:func:`session_digest`), never its id."""

    def lifecycle(self, record: LifecycleRecord) -> None:
        """A sandbox's start (ended by its ready or a failed start), respawn, stop."""


_NOTHING: AbstractContextManager[None] = nullcontext()


def session_digest(session_id: str | None) -> str | None:
    """A session by a digest of its id: enough to group a session's records, and not the id a
    remote client presents."""
    if session_id is None:
        return None
    return _digest(session_id)


@functools.lru_cache(maxsize=256)  # every call of a session asks again
def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]


def _no_redaction_yet(text: str) -> str:
    raise AssertionError("the observer's redaction is set by the proxy before any record")


async def _no_json_redaction_yet(value: Any) -> Any:
    raise AssertionError("the observer's redaction is set by the proxy before any record")


def _not_at_once(value: Any) -> Any | None:
    return None  # the proxy's redaction is not set yet: redact_json says so


@attrs.define(eq=False)
class CallObservation:
    """One call being observed: finish it once, with how it ended."""

    observer: Observer
    kind: CallKind
    name: str  # redacted
    upstream: str | None
    client: str | None
    session: str | None
    arguments: Mapping[str, Any] | None
    span: CallSpan | None
    started: float = attrs.field(factory=time.time)
    _clock_start: float = attrs.field(factory=time.perf_counter)
    generation: int | None = None
    # Set when the call was answered with an error result standing for no result (an upstream
    # that could not serve it): the outcome is then FAILED, with this.
    failure: Failure | None = None
    _finished: bool = False

    def traceparent(self) -> str | None:
        """The ``traceparent`` an upstream gets in the call's ``_meta`` (None: traces off)."""
        return self.span.traceparent() if self.span is not None else None

    def child(self, name: str) -> AbstractContextManager[None]:
        """The span's child for a block; nothing to enter when traces are off."""
        return self.span.child(name) if self.span is not None else _NOTHING

    def finish_now(self, outcome: Outcome, failure: Failure | None = None) -> bool:
        """Finish at once, without yielding, when the arguments are small enough to redact
        here (True: finished); False: they are not, and :meth:`finish` must be awaited. Most
        calls take this path: no trip through the scheduler for a record."""
        if self._finished:
            return True
        duration = time.perf_counter() - self._clock_start
        arguments = self.arguments
        if arguments is not None and self.observer.sinks:
            arguments = self.observer.redact_small_json(arguments)
            if arguments is None:
                return False
        self._finished = True
        self._end(outcome, failure, arguments, duration)
        return True

    async def finish(self, outcome: Outcome, failure: Failure | None = None) -> None:
        if self._finished:
            return
        self._finished = True
        duration = time.perf_counter() - self._clock_start
        arguments = self.arguments
        if arguments is not None and self.observer.sinks:
            arguments = await self.observer.redact_json(arguments)
        self._end(outcome, failure, arguments, duration)

    def _end(
        self,
        outcome: Outcome,
        failure: Failure | None,
        arguments: Mapping[str, Any] | None,
        duration: float,
    ) -> None:
        observer = self.observer
        if failure is not None:
            failure = attrs.evolve(failure, message=observer.redact_text(failure.message))
        if self.span is not None:
            self.span.end(outcome, failure, self.upstream)
        if not observer.sinks:
            return
        observer.emit(
            CallRecord(
                kind=self.kind,
                started=self.started,
                duration=duration,
                client=self.client,
                session=self.session,
                upstream=self.upstream,
                name=self.name,
                arguments=arguments,
                outcome=outcome,
                failure=failure,
                generation=self.generation,
                trace_id=self.span.trace_id if self.span is not None else None,
            )
        )


@attrs.define(eq=False)
class Observer:
    """Hands every record to its sinks and makes a call's span; see the module's docstring.

    ``redact_text``, ``redact_json`` and ``redact_small_json`` are the proxy's redaction (set
    by the proxy that owns the redactor, before the first record); ``redact_small_json`` is
    None for a value too large to redact without yielding (then ``redact_json`` does)."""

    sinks: Sequence[Sink] = ()
    tracing: Tracing | None = None
    redact_text: RedactText = _no_redaction_yet
    redact_json: RedactJson = _no_json_redaction_yet
    redact_small_json: RedactSmallJson = _not_at_once
    # The sandbox's state as it is now, for the metrics' gauges (set by the sandbox).
    gauges: Callable[[], SandboxGauges] | None = None
    # Where the metrics are served, when they are.
    metrics_url: str | None = None

    def read_gauges(self) -> SandboxGauges | None:
        return self.gauges() if self.gauges is not None else None

    @property
    def active(self) -> bool:
        return bool(self.sinks) or self.tracing is not None

    def start_call(
        self,
        kind: CallKind,
        name: str,
        *,
        upstream: str | None,
        client: str | None,
        session_id: str | None,
        arguments: Mapping[str, Any] | None = None,
        traceparent: str | None = None,
    ) -> CallObservation | None:
        """A call's observation, or None when nothing observes (the caller skips the rest)."""
        if not self.active:
            return None
        shown = self.redact_text(name)  # once: the span's name and the record's
        session = session_digest(session_id)
        span = None
        if self.tracing is not None:
            span = self.tracing.start_call(
                kind, shown, upstream=upstream, client=client, parent=traceparent, session=session
            )
        return CallObservation(self, kind, shown, upstream, client, session, arguments, span)

    def emit(self, record: Record) -> None:
        # A sink that fails (a full disk) loses this record, not the call, nor the other sinks.
        for sink in self.sinks:
            try:
                sink.record(record)
            except Exception:
                logger.exception("a %s could not take a record", type(sink).__name__)

    def lifecycle(
        self,
        phase: LifecyclePhase,
        sandbox: str,
        *,
        generation: int | None = None,
        reason: str | None = None,
        limit: str | None = None,
        count: int | None = None,
    ) -> None:
        if not self.active:
            return
        record = LifecycleRecord(
            phase=phase,
            at=time.time(),
            sandbox=sandbox,
            generation=generation,
            reason=self.redact_text(reason) if reason is not None else None,
            limit=limit,
            count=count,
        )
        if self.tracing is not None:
            self.tracing.lifecycle(record)
        self.emit(record)

    def egress(self, record: EgressRecord) -> None:
        """A connection of the sandbox (the warden's report, which the sandbox could not write:
        its strings are still redacted, a destination may be a secret a command put in a
        name)."""
        if not self.sinks:
            return
        self.emit(
            attrs.evolve(
                record,
                target=self.redact_text(record.target),
                reason=self.redact_text(record.reason) if record.reason is not None else None,
            )
        )

    def placeholder_made(self, rule: str) -> None:
        for sink in self.sinks:
            sink.placeholder_made(rule)

    def output_shortened(self, upstream: str | None) -> None:
        for sink in self.sinks:
            sink.output_shortened(upstream)
