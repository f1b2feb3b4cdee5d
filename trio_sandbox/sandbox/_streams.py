"""Reading a child's output: lines for the CA parser and the log, a tail kept for error reports.

The warden's stdout and stderr carry whatever the sandbox writes there (its processes inherit
them), so they are only ever logged, as untrusted text, and at a bounded rate: a sandbox that
floods them costs the host a read and a split per chunk, not a log record per line. The
warden's reports come on a channel of their own (:func:`pump_reports`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Final

import attrs
import trio

from ..contract import REPORT_MAX_LINE_BYTES

# A line longer than this is cut: a warden printing garbage must not make us buffer without bound.
MAX_LINE_BYTES: Final = 64 * 1024
# Lines of a child's output logged per second at most; the rest are counted in one line.
LOG_LINES_PER_SECOND: Final = 100


async def iter_lines(
    stream: trio.abc.ReceiveStream, max_line: int = MAX_LINE_BYTES
) -> AsyncIterator[str]:
    """Decoded lines of ``stream`` without their line ends; the last one even if unterminated.
    A line longer than ``max_line`` bytes comes in pieces of that size."""
    pending = bytearray()
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        pending += chunk
        while True:
            end = pending.find(b"\n")
            if end < 0:
                if len(pending) > max_line:
                    yield pending[:max_line].decode(errors="replace")
                    del pending[:max_line]
                break
            yield pending[: min(end, max_line)].decode(errors="replace").rstrip("\r")
            del pending[: end + 1]
    if pending:
        yield pending.decode(errors="replace")


@attrs.define(eq=False)
class OutputTail:
    """The last ``limit`` bytes a stream carried, for error messages."""

    limit: int = 4096
    _data: bytearray = attrs.field(factory=bytearray)

    def add(self, chunk: bytes | bytearray) -> None:
        self._data += chunk
        del self._data[: -self.limit]

    def text(self) -> str:
        return self._data.decode(errors="replace")

    def clear(self) -> None:
        self._data.clear()


@attrs.define(eq=False)
class LineLog:
    """Logs a child's lines at INFO, at most ``per_second`` in each second; says how many it
    left out when the next second's first line comes, or the stream ends."""

    log: logging.Logger
    prefix: str
    per_second: int = LOG_LINES_PER_SECOND
    _second_ends: float = -math.inf
    _logged: int = 0
    _skipped: int = 0

    def line(self, text: str) -> None:
        now = trio.current_time()
        if now >= self._second_ends:
            self.flush()
            self._second_ends, self._logged = now + 1.0, 0
        if self._logged < self.per_second:
            self._logged += 1
            self.log.info("%s%s", self.prefix, text)
        else:
            self._skipped += 1

    def flush(self) -> None:
        if self._skipped:
            self.log.info("%s(%d more lines not logged)", self.prefix, self._skipped)
            self._skipped = 0


async def pump_lines_to_log(lines: AsyncIterator[str], log: logging.Logger, prefix: str) -> None:
    """Drain the rest of a child's output into the log: a pipe nobody reads blocks the child."""
    line_log = LineLog(log, prefix)
    try:
        async for line in lines:
            line_log.line(line)
    finally:
        line_log.flush()


async def pump_stderr(
    stream: trio.abc.ReceiveStream, tail: OutputTail, log: logging.Logger, prefix: str
) -> None:
    """Drain a child's stderr into the log and ``tail``."""
    line_log = LineLog(log, prefix)
    pending = bytearray()
    try:
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            tail.add(chunk)
            pending += chunk
            *complete, rest = pending.split(b"\n")
            for line in complete:
                line_log.line(line[:MAX_LINE_BYTES].decode(errors="replace").rstrip("\r"))
            pending = bytearray(rest[-MAX_LINE_BYTES:])
        if pending:
            line_log.line(pending.decode(errors="replace"))
    finally:
        line_log.flush()


async def pump_reports(stream: trio.abc.ReceiveStream, on_line: Callable[[str], None]) -> None:
    """Every line of the warden's report channel to ``on_line`` (a line too long is dropped in
    pieces that do not parse)."""
    async for line in iter_lines(stream, REPORT_MAX_LINE_BYTES):
        on_line(line)
