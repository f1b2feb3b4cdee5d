"""The HTTP face's handshake-era sessions: each with its resumable event streams, and the table
that finds, expires and drops them.

The table is bounded (``HttpSettings.max_sessions``): at the bound, a new session takes the place
of the least recently active idle one (no request in flight, no stream being read), else of the
least recently active one that only holds a stream open (the stream ends; its client's next
request gets 404, which tells it to initialize again), so that a flood of sessions, with or
without streams, cannot keep the next client out. Only when every session has a request in
flight is a new one refused (503); a face whose requests in flight are bounded below
``max_sessions`` never gets there. Idle sessions also expire after ``session_idle_timeout``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Iterator
from typing import Final

import attrs
import trio

from ...protocol import _versions as versions
from ...protocol._errors import HttpRefusal
from ...protocol._jsonrpc import dump_message
from ...protocol._messages import LIMIT_REACHED, Message
from .._budget import RequestBudget
from .._identity import ClientIdentity
from .._server import McpServer
from .._session import ServerSession
from ._asgi import HttpSettings
from ._sse import EventStream

logger = logging.getLogger("trio_sandbox.mcp")

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
    # The streams a GET is reading now, each with the scope of its one reader.
    tailing: dict[str, trio.CancelScope] = attrs.field(factory=dict)
    # Requests of this session's POSTs not answered yet (``HttpSettings.max_requests_per_session``).
    requests: RequestBudget = attrs.field(factory=lambda: RequestBudget(None, "a session"))
    next_stream: int = 0

    @property
    def busy(self) -> bool:
        """A request in flight or a stream being read: not to be expired or evicted."""
        return self.requests.used > 0 or bool(self.tailing)

    @property
    def priming(self) -> bool:
        """Empty priming events (id + retry, no data) exist from 2025-11-25 on."""
        return (self.core.protocol_version or "") >= versions.V2025_11_25

    @contextlib.contextmanager
    def reading(self, stream: EventStream, scope: trio.CancelScope) -> Iterator[None]:
        """``scope`` reads ``stream`` now: the reader before it (if any) ends, so that a stream
        has one reader at a time whatever its client does."""
        older = self.tailing.get(stream.stream_id)
        if older is not None:
            older.cancel()
        self.tailing[stream.stream_id] = scope
        try:
            yield
        finally:
            if self.tailing.get(stream.stream_id) is scope:
                del self.tailing[stream.stream_id]

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
    """The live sessions of one HTTP face, by id, the least recently active first."""

    server: McpServer
    settings: HttpSettings
    _sessions: collections.OrderedDict[str, HttpSession] = attrs.field(
        factory=collections.OrderedDict
    )

    def __len__(self) -> int:
        return len(self._sessions)

    def cores(self) -> list[ServerSession]:
        return [session.core for session in self._sessions.values()]

    def open(self, identity: ClientIdentity | None = None) -> HttpSession:
        """A new session of the client ``identity`` (None: a face that authenticates no one); at
        the maximum, in place of another (503 when every session has requests in flight)."""
        self.expire_idle()
        if len(self._sessions) >= self.settings.max_sessions:
            sessions = self._sessions.values()
            idle = next((s for s in sessions if not s.busy), None) or next(
                (s for s in sessions if not s.requests.used), None
            )
            if idle is None:
                raise HttpRefusal(
                    503,
                    f"too many sessions: all {self.settings.max_sessions} have requests in "
                    "flight; retry when one ends",
                    code=LIMIT_REACHED,
                    headers=[(b"retry-after", b"1")],
                )
            logger.info("session table full: ending the least recently active idle session")
            self.drop(idle)
        core = self.server.open_session(session_id=ServerSession.new_id())
        assert core.session_id is not None
        core.client_identity = identity
        session = HttpSession(core, trio.current_time())
        session.requests.limit = self.settings.max_requests_per_session
        core.set_standalone(session.send_standalone)
        self._sessions[core.session_id] = session
        return session

    def get(self, session_id: str, identity: ClientIdentity | None = None) -> HttpSession:
        """The session ``session_id`` of the client ``identity``; 404 when there is none. A
        session is bound to the identity that opened it: presented by another (a leaked or
        guessed id), it does not exist for that client (the MCP spec's session hijacking
        guidance: bind session ids to the user)."""
        session = self._sessions.get(session_id)
        if session is not None and session.core.client_identity != identity:
            logger.warning("a session id was presented by a client other than its own: refused")
            session = None
        if session is None:
            raise HttpRefusal(404, "session not found: it ended or never existed; initialize again")
        return session

    def touch(self, session: HttpSession) -> None:
        """The session was active now: it moves to the back of the eviction order."""
        session.last_active = trio.current_time()
        session_id = session.core.session_id
        if session_id is not None and session_id in self._sessions:
            self._sessions.move_to_end(session_id)

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
        """End the sessions idle for longer than the idle timeout (the oldest are in front)."""
        timeout = self.settings.session_idle_timeout
        if timeout is None:
            return
        now = trio.current_time()
        expired = []
        for session in self._sessions.values():  # the front only: not a copy of the table
            if now - session.last_active <= timeout:
                break
            if not session.busy:
                expired.append(session)
        for session in expired:
            self.drop(session)
