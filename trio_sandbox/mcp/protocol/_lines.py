"""Stdio's framing, both sides: newline-delimited JSON, one message per line."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

import trio

MAX_LINE_BYTES: Final = 16 * 1024 * 1024


class LineTooLongError(trio.BrokenResourceError):
    """A peer sent a line longer than the limit: the channel cannot be trusted any more."""


async def read_lines(
    stream: trio.abc.ReceiveStream, max_line_bytes: int = MAX_LINE_BYTES
) -> AsyncIterator[bytes]:
    """Lines (without their newline) until end of stream; blank lines are skipped."""
    buffer = bytearray()
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            if buffer.strip():
                yield bytes(buffer)
            return
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end]).rstrip(b"\r")
            del buffer[: end + 1]
            if line.strip():
                yield line
        if len(buffer) > max_line_bytes:
            raise LineTooLongError(f"a line longer than {max_line_bytes} bytes")
