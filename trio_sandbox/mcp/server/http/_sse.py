"""Server-sent events: one stream's events kept for resumption, and their wire format."""

from __future__ import annotations

from typing import Final

import attrs
import trio

# Events kept per stream for resumption after a lost connection.
MAX_EVENTS_PER_STREAM: Final = 1024


@attrs.define(eq=False)
class EventStream:
    """One POST's outbound SSE events, kept so that a client can resume after a lost connection."""

    stream_id: str
    events: list[tuple[int, bytes]] = attrs.field(factory=list)
    finished: bool = False
    changed: trio.Event = attrs.field(factory=trio.Event)
    next_seq: int = 1

    def append(self, payload: bytes) -> int:
        seq = self.next_seq
        self.next_seq += 1
        self.events.append((seq, payload))
        del self.events[:-MAX_EVENTS_PER_STREAM]
        self._wake()
        return seq

    def finish(self) -> None:
        self.finished = True
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def since(self, seq: int) -> list[tuple[int, bytes]]:
        return [event for event in self.events if event[0] > seq]

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1


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
