"""Reading a child's output: lines for the CA parser and the log, a tail kept for error reports."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import attrs
import trio

WARDEN_WARNING_PREFIX = "trio-sandbox-warden: warning:"
# A line longer than this is cut: a warden printing garbage must not make us buffer without bound.
MAX_LINE_BYTES = 64 * 1024


async def iter_lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[str]:
    """Decoded lines of ``stream`` without their line ends; the last one even if unterminated."""
    pending = bytearray()
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        pending += chunk
        while True:
            end = pending.find(b"\n")
            if end < 0:
                if len(pending) > MAX_LINE_BYTES:
                    yield pending[:MAX_LINE_BYTES].decode(errors="replace")
                    del pending[:MAX_LINE_BYTES]
                break
            yield pending[: min(end, MAX_LINE_BYTES)].decode(errors="replace").rstrip("\r")
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


async def pump_lines_to_log(lines: AsyncIterator[str], log: logging.Logger, prefix: str) -> None:
    """Drain the rest of a child's output into the log: a pipe nobody reads blocks the child."""
    async for line in lines:
        log.info("%s%s", prefix, line)


async def pump_stderr(
    stream: trio.abc.ReceiveStream,
    tail: OutputTail,
    log: logging.Logger,
    prefix: str,
    on_line: Callable[[str], None] | None = None,
) -> None:
    """Drain a child's stderr into the log and ``tail``; ``on_line`` sees every line too."""
    pending = bytearray()
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        tail.add(chunk)
        pending += chunk
        *complete, rest = pending.split(b"\n")
        for line in complete:
            _log_line(line.decode(errors="replace").rstrip("\r"), log, prefix, on_line)
        pending = bytearray(rest[-MAX_LINE_BYTES:])
    if pending:
        _log_line(pending.decode(errors="replace"), log, prefix, on_line)


def _log_line(
    line: str, log: logging.Logger, prefix: str, on_line: Callable[[str], None] | None
) -> None:
    # The warden's own warnings (a limit not enforced, a volume skipped) are for the user.
    level = logging.WARNING if line.startswith(WARDEN_WARNING_PREFIX) else logging.INFO
    log.log(level, "%s%s", prefix, line)
    if on_line is not None:
        on_line(line)
