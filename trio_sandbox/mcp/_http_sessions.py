"""The HTTP face's handshake-era sessions: each with its resumable event streams, and the table
that finds, expires and drops them."""

from __future__ import annotations

from typing import Final

import attrs
import trio

from . import _versions as versions
from ._asgi import HttpRefusal, HttpSettings
from ._jsonrpc import CONNECTION_CLOSED, Message, dump_message
from ._server import McpServer
from ._session import ServerSession
from ._sse import EventStream

# Streams kept per session for resumption after a lost connection.
MAX_STREAMS_PER_SESSION: Final = 64
# The id of a session's standalone (GET) stream; POST streams count up from 1.
STANDALONE_STREAM: Final = "0"


@attrs.define(eq=False)
class HttpSession:
    """A handshake-era session and the event streams it can resume."""

    core: ServerSession
    last_active: float
    # Messages not tied to a request; kept while no GET stream is open, so that a client that
    # reconnects with Last-Event-ID misses nothing.
    standalone: EventStream = attrs.field(factory=lambda: EventStream(STANDALONE_STREAM))
    streams: dict[str, EventStream] = attrs.field(factory=dict)
    standalone_open: bool = False
    next_stream: int = 0

    @property
    def priming(self) -> bool:
        """Empty priming events (id + retry, no data) exist from 2025-11-25 on."""
        return (self.core.protocol_version or "") >= versions.V2025_11_25

    async def send_standalone(self, message: Message) -> None:
        self.standalone.append(dump_message(message))

    def find_stream(self, stream_id: str) -> EventStream | None:
        if stream_id == STANDALONE_STREAM:
            return self.standalone
        return self.streams.get(stream_id)

    def new_stream(self) -> EventStream:
        self.next_stream += 1
        stream = EventStream(f"{self.next_stream}")
        self.streams[stream.stream_id] = stream
        while len(self.streams) > MAX_STREAMS_PER_SESSION:
            del self.streams[next(iter(self.streams))]
        return stream


@attrs.define(eq=False)
class SessionTable:
    """The live sessions of one HTTP face, by id."""

    server: McpServer
    settings: HttpSettings
    _sessions: dict[str, HttpSession] = attrs.field(factory=dict)

    def __len__(self) -> int:
        return len(self._sessions)

    def cores(self) -> list[ServerSession]:
        return [session.core for session in self._sessions.values()]

    def open(self) -> HttpSession:
        """A new session (503 when the face holds its maximum already)."""
        self.expire_idle()
        if len(self._sessions) >= self.settings.max_sessions:
            raise HttpRefusal(503, "too many sessions", code=CONNECTION_CLOSED)
        core = self.server.open_session(session_id=ServerSession.new_id())
        assert core.session_id is not None
        session = HttpSession(core, trio.current_time())
        core.set_standalone(session.send_standalone)
        self._sessions[core.session_id] = session
        return session

    def get(self, session_id: str) -> HttpSession:
        session = self._sessions.get(session_id)
        if session is None:
            raise HttpRefusal(404, "session not found: it ended or never existed; initialize again")
        return session

    def drop(self, session: HttpSession) -> None:
        if session.core.session_id is not None:
            self._sessions.pop(session.core.session_id, None)
        self.server.close_session(session.core)
        session.standalone.finish()
        for stream in session.streams.values():
            stream.finish()

    def drop_all(self) -> None:
        for session in list(self._sessions.values()):
            self.drop(session)

    def expire_idle(self) -> None:
        timeout = self.settings.session_idle_timeout
        if timeout is None:
            return
        now = trio.current_time()
        for session in list(self._sessions.values()):
            busy = session.core.in_flight or session.standalone_open
            if not busy and now - session.last_active > timeout:
                self.drop(session)
