"""What the audit log, the metrics and the traces are told: one frozen value per event.

The proxy and the sandbox build these; :class:`~._observer.Observer` hands each to every sink.
A record holds only what may be written anywhere: the strings in it have passed redaction before
it is built (the observer redacts what it is given), a client is its credential's digest, and a
session is a digest of its id (a session id is half of what a remote client presents).

The JSON form of each record is the audit log's line, so the schema is here, once, with its
version (:data:`AUDIT_SCHEMA_VERSION`); README's "See what the agent did" shows it.
"""

from __future__ import annotations

import enum
import functools
import math
import time
from collections.abc import Mapping
from typing import Any, Final, TypeAlias

import attrs

from ..egress import Verdict

# Bumped when a field changes meaning or goes away (adding a field does not bump it).
AUDIT_SCHEMA_VERSION: Final = 1

JsonRecord: TypeAlias = dict[str, Any]
# The egress proxy's own verdicts: allowed, refused, failed (allowed, but not reached).
EgressVerdict: TypeAlias = Verdict


class Outcome(enum.StrEnum):
    """How a call ended: its result, a result that says the tool failed, or no result."""

    OK = "ok"
    TOOL_ERROR = "tool_error"  # a result with isError: the tool ran and reported a failure
    FAILED = "failed"  # no result: a typed error (failure.type) instead


class CallKind(enum.StrEnum):
    TOOL_CALL = "tool_call"
    RESOURCE_READ = "resource_read"
    PROMPT_GET = "prompt_get"  # a prompt runs its upstream's code with the client's arguments

    @property
    def name_key(self) -> str:
        """The record's key for what was called: a tool, a URI, a prompt."""
        return _NAME_KEYS[self]


_NAME_KEYS: Final = {
    CallKind.TOOL_CALL: "tool",
    CallKind.RESOURCE_READ: "uri",
    CallKind.PROMPT_GET: "prompt",
}


class LifecyclePhase(enum.StrEnum):
    START = "start"  # a sandbox generation is being started
    READY = "ready"  # it serves (for the main sandbox: the supervisor swapped it in)
    RESPAWN = "respawn"  # it went down and another is on its way; reason says why
    LIMIT_HIT = "limit_hit"  # the kernel enforced a limit (limit: memory or pids)
    STOP = "stop"  # the whole sandbox (open_sandbox) stopped
    FAILED = "failed"  # respawning gave up


@functools.lru_cache(maxsize=4)
def ellipsized(text: str, limit: int) -> str:
    """``text``, or its first ``limit - 1`` characters and "…" when it is longer than ``limit``
    (a client's name or an upstream's message, cut where a record or a span holds it)."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _whole_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def wall_time(seconds: float) -> str:
    """An RFC 3339 UTC time with microseconds, as every record writes its time (the second's
    text made once per second: records come many a second)."""
    second = math.floor(seconds)
    micros = min(round((seconds - second) * 1_000_000), 999_999)
    return f"{_whole_second(second)}.{micros:06d}Z"


@attrs.frozen
class Failure:
    """Why a call has no result: the error's type (``SandboxRestarted``, ``McpError``, ...),
    its JSON-RPC code when it has one, and its message (redacted)."""

    type: str
    message: str
    code: int | None = None

    def to_json(self) -> JsonRecord:
        return {"type": self.type, "code": self.code, "message": self.message}


@attrs.frozen(kw_only=True)
class CallRecord:
    """One tool call or resource read through the proxy, as it ended.

    ``client``: the identity key of the client (``certificate:<sha256>`` of its certificate or
    ``token:<hmac>`` of its token) or None where the face authenticates no one (stdio, the
    embedding API); ``session``: a digest of the MCP session id; ``name``: the tool's name as
    the client called it, or the resource's URI; ``arguments``: the call's arguments, redacted
    (None for a read); ``generation``: the sandbox generation that served it, when the upstream
    is the sandbox; ``trace_id``: the call's trace, when traces are on."""

    kind: CallKind
    started: float  # time.time()
    duration: float  # seconds
    client: str | None
    session: str | None
    upstream: str | None
    name: str
    arguments: Mapping[str, Any] | None
    outcome: Outcome
    failure: Failure | None = None
    generation: int | None = None
    trace_id: str | None = None

    def to_json(self) -> JsonRecord:
        record: JsonRecord = {
            "v": AUDIT_SCHEMA_VERSION,
            "time": wall_time(self.started),
            "event": self.kind.value,
            "client": self.client,
            "session": self.session,
            "upstream": self.upstream,
            self.kind.name_key: self.name,
        }
        if self.kind is not CallKind.RESOURCE_READ:
            record["arguments"] = self.arguments
        record |= {
            "outcome": self.outcome.value,
            "error": self.failure.to_json() if self.failure is not None else None,
            "duration_s": round(self.duration, 6),
            "generation": self.generation,
            "trace_id": self.trace_id,
        }
        return record


@attrs.frozen(kw_only=True)
class LifecycleRecord:
    """A sandbox's life: ``sandbox`` names which (the main one, or a per-client one by its
    upstream's name); ``limit`` is set for a limit hit (``memory``, ``pids``), ``count`` is how
    many the kernel counted since the last record."""

    phase: LifecyclePhase
    at: float  # time.time()
    sandbox: str
    generation: int | None = None
    reason: str | None = None
    limit: str | None = None
    count: int | None = None

    def to_json(self) -> JsonRecord:
        return {
            "v": AUDIT_SCHEMA_VERSION,
            "time": wall_time(self.at),
            "event": "sandbox",
            "phase": self.phase.value,
            "sandbox": self.sandbox,
            "generation": self.generation,
            "reason": self.reason,
            "limit": self.limit,
            "count": self.count,
        }


@attrs.frozen(kw_only=True)
class EgressRecord:
    """One connection of the sandbox to the network, or (``count`` > 1) the sum of the
    repeats of one decision in a window when the sandbox made too many to list one by one.

    ``rule``: the allow-list entry that allowed it; ``reason``: why it was refused or failed;
    ``bytes_up`` went to the destination, ``bytes_down`` came from it."""

    verdict: EgressVerdict
    at: float  # time.time() of the decision
    protocol: str
    target: str
    sandbox: str
    generation: int | None = None
    rule: str | None = None
    reason: str | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    duration: float = 0.0
    count: int = 1

    def to_json(self) -> JsonRecord:
        return {
            "v": AUDIT_SCHEMA_VERSION,
            "time": wall_time(self.at),
            "event": "egress",
            "verdict": self.verdict.value,
            "protocol": self.protocol,
            "target": self.target,
            "rule": self.rule,
            "reason": self.reason,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "duration_s": round(self.duration, 6),
            "count": self.count,
            "sandbox": self.sandbox,
            "generation": self.generation,
        }


Record: TypeAlias = CallRecord | LifecycleRecord | EgressRecord


@attrs.frozen(kw_only=True)
class SandboxGauges:
    """What a scrape reads from the sandbox as it is now (None: cannot be told here)."""

    generation: int = 0
    ready_spares: int = 0
    session_sandboxes: int = 0
    memory_bytes: int | None = None
    memory_limit_bytes: int | None = None
    pids: int | None = None
    pids_limit: int | None = None
