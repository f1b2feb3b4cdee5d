"""A span processor that hands finished spans to a child process, which exports them
(:mod:`._otel_child`): the proxy's process only flattens a span (a few microseconds) and writes
batches on a pipe; encoding and HTTP run beside it, on another CPU, without the interpreter lock
the event loop needs.

Batches go when ``max_batch`` spans are pending, or every ``max_delay`` seconds (a thread of the
processor's, joined at shutdown): ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` and
``OTEL_BSP_SCHEDULE_DELAY`` (milliseconds) when set, else 2,048 spans and one second (a quarter
of the requests 512 made: the child's CPU per call fell from ~43 to ~32 us here). A batch is at
most 2,048 spans (the SDK's queue size, which its own processor's batch may not pass) and the
delay 0.1 s to an hour. The queue is bounded in bytes, not by ``OTEL_BSP_MAX_QUEUE_SIZE``.
Writes never block the event loop: what the pipe cannot take waits in a buffer, bounded, and
the processor's thread hands it over as the pipe drains; past the bound, new spans are dropped
and counted (as the SDK's batch processor drops spans when its queue is full), and said once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import subprocess
import sys
import threading
import time
from typing import Any, Final

from opentelemetry.sdk.environment_variables import (
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BSP_SCHEDULE_DELAY,
)
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from ._otel_child import FlatSpan, flat_span, frame

logger = logging.getLogger("trio_sandbox.observe")

MAX_BATCH: Final = 2048
MAX_DELAY: Final = 1.0
# OTEL_BSP_SCHEDULE_DELAY's range: a batch (an HTTP request of the child's) at most ten times a
# second, and at least once an hour.
DELAY_MS_BOUNDS: Final = (100, 3_600_000)
# While bytes wait for the pipe, how often the ticker looks at the stop flag between writes.
BACKLOG_POLL: Final = 0.05
MAX_BUFFERED: Final = 16 * 1024 * 1024
PIPE_BYTES: Final = 1024 * 1024
SHUTDOWN_SECONDS: Final = 30.0


class ChildExportProcessor(SpanProcessor):
    """See the module's docstring; made by :func:`child_export_processor`."""

    def __init__(
        self,
        child: subprocess.Popen[bytes],
        resource: dict[str, Any],
        *,
        max_batch: int = MAX_BATCH,
        max_delay: float = MAX_DELAY,
    ) -> None:
        assert child.stdin is not None
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._child = child
        self._stdin = child.stdin
        self._fd = child.stdin.fileno()
        os.set_blocking(self._fd, False)
        with contextlib.suppress(OSError):  # a lower system bound: batches wait in the buffer
            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._lock = threading.Lock()
        self._pending: list[FlatSpan] = []
        self._out = bytearray(frame(resource))
        self._dropped = 0
        self._broken = False
        self._stopping = threading.Event()
        # Set by the stop and by a write the pipe could not take whole: the ticker wakes for both.
        self._wake = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="trio-sandbox spans", daemon=True)
        self._ticker.start()

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self.take(flat_span(span))

    def take(self, span: FlatSpan) -> None:
        """An ended span, flat (:mod:`._otel_spans` makes them so from the start)."""
        with self._lock:
            self._pending.append(span)
            if len(self._pending) >= self._max_batch:
                self._flush_locked()

    def _flush_locked(self) -> None:
        if self._pending:
            if self._broken or len(self._out) > MAX_BUFFERED:
                if not self._dropped:
                    logger.warning("traces: spans are being dropped (the exporter lags)")
                self._dropped += len(self._pending)
            else:
                self._out += frame(self._pending)
            self._pending = []
        self._write_locked()

    def _write_locked(self) -> None:
        while self._out and not self._broken:
            try:
                written = os.write(self._fd, self._out)
            except BlockingIOError:
                self._wake.set()
                return
            except OSError as error:
                self._broken = True
                self._out.clear()
                logger.warning("traces: the exporter process is gone (%s)", error)
                return
            del self._out[:written]

    def _tick(self) -> None:
        # Every max_delay the pending spans go; between, what the pipe could not take (a pipe
        # smaller than a batch, a child slow to read) is handed over as the pipe drains.
        due = time.monotonic() + self._max_delay
        while not self._stopping.is_set():
            with self._lock:
                backlog = bool(self._out) and not self._broken
            wait = due - time.monotonic()
            if backlog:
                select.select([], [self._fd], [], min(max(wait, 0.0), BACKLOG_POLL))
                with self._lock:
                    self._write_locked()
            elif wait > 0:
                self._wake.wait(wait)
                self._wake.clear()  # a wake lost here is seen as a backlog on the next turn
            if time.monotonic() >= due:
                with self._lock:
                    self._flush_locked()
                due = time.monotonic() + self._max_delay

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Hand every pending span to the child within the timeout (not: wait for its export)."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._lock:
            self._flush_locked()
            while self._out and not self._broken:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                select.select([], [self._fd], [], remaining)
                self._flush_locked()
        return not self._broken

    def shutdown(self) -> None:
        """Hand over what is left, end the child's input, and wait for it to send it all."""
        self._stopping.set()
        self._wake.set()
        self._ticker.join()
        self.force_flush(int(SHUTDOWN_SECONDS * 1000))
        self._stdin.close()
        try:
            self._child.wait(SHUTDOWN_SECONDS)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        if self._dropped:
            logger.warning("traces: %d spans were dropped", self._dropped)


def child_export_processor(resource: dict[str, Any]) -> ChildExportProcessor:
    """The processor, its child started (it inherits the OTEL_* variables and our stderr)."""
    max_batch = _whole_variable(OTEL_BSP_MAX_EXPORT_BATCH_SIZE, MAX_BATCH, 1, MAX_BATCH)
    delay_ms = _whole_variable(OTEL_BSP_SCHEDULE_DELAY, round(MAX_DELAY * 1000), *DELAY_MS_BOUNDS)
    child = subprocess.Popen(
        [sys.executable, "-m", "trio_sandbox.observe._otel_child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        close_fds=True,
    )
    return ChildExportProcessor(child, resource, max_batch=max_batch, max_delay=delay_ms / 1000)


def _whole_variable(name: str, default: int, lowest: int, highest: int) -> int:
    """The whole number ``name`` holds, kept within ``lowest``..``highest``; ``default`` when it
    is unset or (with a warning, as the SDK's processor gives) not a positive whole number."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        logger.warning("traces: %s is not a positive whole number: %d is used", name, default)
        return default
    if not lowest <= value <= highest:
        kept = min(max(value, lowest), highest)
        logger.warning("traces: %s is kept within %d..%d: %d is used", name, lowest, highest, kept)
        return kept
    return value
