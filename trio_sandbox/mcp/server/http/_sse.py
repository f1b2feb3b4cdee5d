"""Server-sent events: one stream's events kept for resumption, and their wire format."""

from __future__ import annotations

from typing import Final

import attrs

from ....concurrency import AsyncValue

# Events kept per stream for resumption after a lost connection.
MAX_EVENTS_PER_STREAM: Final = 1024


@attrs.define(eq=False)
class EventStream:
    """One POST's outbound SSE events, kept so that a client can resume after a lost connection."""

    stream_id: str
    events: list[tuple[int, bytes]] = attrs.field(factory=list)
    # The sequence number of the last event, and whether the stream is finished: what readers
    # wait on.
    progress: AsyncValue[tuple[int, bool]] = attrs.field(factory=lambda: AsyncValue((0, False)))

    def append(self, payload: bytes) -> int:
        seq = self.last_seq + 1
        self.events.append((seq, payload))
        del self.events[:-MAX_EVENTS_PER_STREAM]
        self.progress.value = (seq, self.finished)
        return seq

    def finish(self) -> None:
        self.progress.value = (self.last_seq, True)

    def since(self, seq: int) -> list[tuple[int, bytes]]:
        return [event for event in self.events if event[0] > seq]

    async def wait_past(self, seq: int) -> None:
        """Return once the stream has an event after ``seq``, or is finished."""
        await self.progress.wait_value(lambda progress: progress[0] > seq or progress[1])

    @property
    def last_seq(self) -> int:
        return self.progress.value[0]

    @property
    def finished(self) -> bool:
        return self.progress.value[1]


def sse_event(payload: bytes, event_id: str | None = None, retry_ms: int | None = None) -> bytes:
    out = b""
    if event_id is not None:
        out += b"id: " + event_id.encode() + b"\n"
    if retry_ms is not None:
        out += b"retry: " + str(retry_ms).encode() + b"\n"
    return out + b"event: message\ndata: " + payload + b"\n\n"


SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
