"""The one byte relay: a socket with a read-ahead buffer, bounded pumps, the two-way tunnel.

The egress proxy's tunnels and bodies and the warden's published ports all move bytes here.
Every pump holds at most one bounded chunk in the process at a time, so memory per tunnel does
not depend on how fast either side reads. On Linux the pumps move data with ``splice(2)`` through
a pipe the kernel owns (socket -> pipe -> socket), which skips two copies through Python and is
what lets a tunnel run near the speed of a direct connection; elsewhere, or where splice refuses
a socket, they copy in chunks of ``RELAY_CHUNK``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable
from typing import Any, Final, Generic, TypeAlias, TypeVar

import attrs
import trio

from ._errors import CannotSplice, LineTooLong, StreamEnded

RECEIVE_CHUNK: Final = 65536  # reads while looking for a request head or a chunk line
RELAY_CHUNK: Final = 262144  # the most a copying pump holds at once
PIPE_SIZE: Final = 1 << 20  # what a splicing pump asks the kernel for (pipe-max-size)
PIPE_KEPT_IDLE: Final = 1.0  # seconds an idle splicing pump keeps its pipe
_SPLICE_FLAGS: Final = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
_F_SETPIPE_SZ: Final = getattr(fcntl, "F_SETPIPE_SZ", 1031)
CAN_SPLICE: Final = hasattr(os, "splice")

ByteCounter = Callable[[int], None]
StreamT = TypeVar("StreamT", bound=trio.abc.Stream)
_BROKEN: Final = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


def _uncounted(_count: int) -> None:
    pass


async def _readable_within(sock: trio.socket.SocketType, seconds: float) -> bool:
    with trio.move_on_after(seconds):
        await trio.lowlevel.wait_readable(sock)
        return True
    return False


@attrs.define(eq=False)
class Buffered(Generic[StreamT]):
    """A stream (a socket, or TLS over one) and the bytes read from it that nobody consumed
    yet."""

    stream: StreamT
    buffer: bytearray = attrs.field(factory=bytearray)

    async def fill(self) -> bool:
        """Read more into the buffer; False at end of stream."""
        data = await self.stream.receive_some(RECEIVE_CHUNK)
        self.buffer += data
        return bool(data)

    def take(self, limit: int | None = None) -> bytes:
        size = len(self.buffer) if limit is None else min(limit, len(self.buffer))
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def read_until(self, delimiter: bytes, limit: int) -> bytes:
        """Everything up to and including ``delimiter``, which must come within ``limit``."""
        searched = 0
        while True:
            found = self.buffer.find(delimiter, searched)
            if found >= 0:
                if found + len(delimiter) > limit:
                    raise LineTooLong
                return self.take(found + len(delimiter))
            if len(self.buffer) >= limit:
                raise LineTooLong
            searched = max(0, len(self.buffer) - len(delimiter) + 1)
            if not await self.fill():
                raise StreamEnded

    async def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not await self.fill():
                raise StreamEnded
        return self.take(size)


BufferedSocket: TypeAlias = Buffered[trio.SocketStream]


@attrs.define(eq=False)
class Pump:
    """Moves bytes from one stream (its buffer first) to another, splicing where it can (two
    sockets)."""

    zero_copy: bool = CAN_SPLICE
    _pipe: tuple[int, int] | None = None

    async def move(
        self,
        source: Buffered[Any],
        sink: trio.abc.SendStream,
        count: ByteCounter,
        limit: int | None,
    ) -> None:
        """Exactly ``limit`` bytes (:class:`StreamEnded` if the source ends first), or, with
        ``limit=None``, everything until the source's end of stream."""
        left = limit
        if source.buffer:
            data = source.take(left)
            await sink.send_all(data)
            count(len(data))
            left = None if left is None else left - len(data)
        if left == 0:
            return
        if (
            self.zero_copy
            and isinstance(source.stream, trio.SocketStream)
            and isinstance(sink, trio.SocketStream)
        ):
            try:
                await self._splice(source.stream, sink, count, left)
                return
            except CannotSplice:
                self.zero_copy = False
        while left is None or left > 0:
            data = await source.stream.receive_some(
                RELAY_CHUNK if left is None else min(left, RELAY_CHUNK)
            )
            if not data:
                if left is None:
                    return
                raise StreamEnded
            await sink.send_all(data)
            count(len(data))
            if left is not None:
                left -= len(data)

    async def _splice(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        count: ByteCounter,
        left: int | None,
    ) -> None:
        """socket -> pipe -> socket. Each round tries both ends without blocking and waits only
        when neither moved: for the sink while the pipe holds data, else for the source — at
        once when the source gave less than there was room for and all of it went on (a small
        message: asking the source again would only find it empty)."""
        read_end, write_end = self._pipe_fds()
        source_fd, sink_fd = source.socket.fileno(), sink.socket.fileno()
        in_pipe = 0
        ended = False
        spliced = False
        drained = False
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            moved = False
            room = PIPE_SIZE - in_pipe if left is None else min(PIPE_SIZE - in_pipe, left)
            if not ended and room and not drained:
                try:
                    taken = os.splice(source_fd, write_end, room, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    pass
                except OSError as error:
                    if not spliced and error.errno in (errno.EINVAL, errno.ENOSYS):
                        raise CannotSplice from error
                    raise
                else:
                    spliced = moved = True
                    ended = taken == 0
                    drained = 0 < taken < room
                    in_pipe += taken
                    left = None if left is None else left - taken
            if in_pipe:
                try:
                    given = os.splice(read_end, sink_fd, in_pipe, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    pass
                else:
                    moved = True
                    in_pipe -= given
                    count(given)
            if not in_pipe and (ended or left == 0):
                if ended and left:
                    raise StreamEnded
                return
            if in_pipe:
                if moved:
                    await trio.lowlevel.checkpoint()  # a busy pump never blocks: stay cancellable
                else:
                    await trio.lowlevel.wait_writable(sink.socket)
            elif moved and not drained:
                await trio.lowlevel.checkpoint()
            else:
                drained = False
                if await _readable_within(source.socket, PIPE_KEPT_IDLE):
                    continue
                # An idle tunnel holds no pipe: pipes count against the user's pipe quota
                # (pipe-user-pages-soft), and a hundred idle tunnels must not exhaust it. A
                # short pause keeps it: a conversation of small messages (a tool call) would
                # otherwise make and resize a pipe for every message.
                self.close()
                await trio.lowlevel.wait_readable(source.socket)
                read_end, write_end = self._pipe_fds()

    def _pipe_fds(self) -> tuple[int, int]:
        if self._pipe is None:
            read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            with contextlib.suppress(OSError):  # over the user's pipe quota: the default size
                fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_SIZE)
            self._pipe = (read_end, write_end)
        return self._pipe

    def close(self) -> None:
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None


async def relay_tunnel(
    client: BufferedSocket,
    upstream: BufferedSocket,
    *,
    sent: ByteCounter = _uncounted,
    received: ByteCounter = _uncounted,
    zero_copy: bool = True,
) -> None:
    """Both directions until both ends have closed; an end of stream is passed on as a
    half-close, and a broken side ends both directions. ``sent`` counts the bytes from
    ``client`` to ``upstream``, ``received`` the other way."""

    async def one_way(source: BufferedSocket, sink: BufferedSocket, count: ByteCounter) -> None:
        pump = Pump(zero_copy and CAN_SPLICE)
        try:
            await pump.move(source, sink.stream, count, None)
            await sink.stream.send_eof()
        except _BROKEN:
            nursery.cancel_scope.cancel()
        finally:
            pump.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one_way, client, upstream, sent)
        nursery.start_soon(one_way, upstream, client, received)
