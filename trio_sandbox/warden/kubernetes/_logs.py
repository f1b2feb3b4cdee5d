"""The Pod's log, followed onto the warden's stdout: where the host reads the CA block.

The log is asked for with timestamps, so that a stream that was cut (the API server or a proxy
closing it, a short outage) is taken up again near where it ended: ``sinceTime`` (whole seconds,
inclusive) one second before the newest line written, which also covers stdout and stderr lines
stamped slightly out of order. Which lines of the new stream were written already is decided by
counting, not by comparing timestamps: the API does not promise distinct timestamps (two lines
read together, a coarse node clock), so the new stream's first lines are exactly the lines
already written that ``sinceTime`` keeps, and those are skipped by their number.
The same parser as the host's (``trio_sandbox.tls.CaBlockParser``) notes when the block has
gone by, so that a Pod that ends before it is reported with its last lines.
"""

from __future__ import annotations

import collections
import datetime
import sys

import attrs
import trio

from ...tls import CaBlockError, CaBlockParser
from .._errors import ApiUnreachable
from ._api import KubeApi
from ._status import Outage

TAIL_LINES = 20
# How far before the newest line's second a cut stream is taken up again.
RESUME_MARGIN = datetime.timedelta(seconds=1)
_SECOND_FORMAT = "%Y-%m-%dT%H:%M:%S"


def since_time(stamp: str) -> str:
    """The whole second of ``stamp``, as ``sinceTime`` takes it."""
    return stamp.rstrip("Z").partition(".")[0] + "Z"


def _second_before(second: str) -> str:
    moment = datetime.datetime.strptime(second, _SECOND_FORMAT) - RESUME_MARGIN
    return moment.strftime(_SECOND_FORMAT)


@attrs.define(eq=False)
class ResumePoint:
    """Where a cut log stream is taken up again, and how many of its first lines were written.

    Counts the lines written per whole second from one second before the newest one on: a
    stream asked for ``since`` starts with exactly those of them at or after ``since``.
    """

    _counts: collections.Counter[str] = attrs.field(factory=collections.Counter)
    _newest: str | None = None

    def wrote(self, stamp: str) -> None:
        second = since_time(stamp).rstrip("Z")
        if self._newest is None or second > self._newest:
            self._newest = second
            floor = _second_before(second)
            for old in [old for old in self._counts if old < floor]:
                del self._counts[old]
        self._counts[second] += 1

    @property
    def since(self) -> str | None:
        """``sinceTime`` for the next stream (None: from the start)."""
        if self._newest is None:
            return None
        return _second_before(self._newest) + "Z"

    def already_written(self) -> int:
        """How many of the first lines of a stream asked for ``since`` were written already."""
        since = self.since
        if since is None:
            return 0
        floor = since.rstrip("Z")
        return sum(count for second, count in self._counts.items() if second >= floor)


@attrs.define(eq=False)
class LogFollower:
    """Writes the Pod's log lines to ``out`` as they come, once each."""

    kube: KubeApi
    pod: str
    out: trio.abc.SendStream
    parser: CaBlockParser = attrs.field(factory=CaBlockParser)
    block_seen: trio.Event = attrs.field(factory=trio.Event)
    tail: collections.deque[str] = attrs.field(factory=lambda: collections.deque(maxlen=TAIL_LINES))
    resume: ResumePoint = attrs.field(factory=ResumePoint)

    async def _write(self, text: str) -> None:
        self.tail.append(text)
        await self.out.send_all(text.encode("utf-8", "surrogateescape") + b"\n")
        if self.block_seen.is_set():
            return
        try:
            if self.parser.feed_line(text) is not None:
                self.block_seen.set()
        except CaBlockError as error:
            # The host's own parser fails the start with the same reason; nothing to add here.
            print(f"trio-sandbox-warden: note: {error}", file=sys.stderr, flush=True)

    async def follow_once(self) -> int | None:
        """One log request, until its stream ends; how many new lines it brought (None: it ended
        before the lines already written, so it was cut: the log never shrinks)."""
        new = 0
        skip = self.resume.already_written()
        async with self.kube.log_lines(self.pod, since_time=self.resume.since) as lines:
            async for line in lines:
                if skip:
                    skip -= 1  # written before the stream was cut
                    continue
                stamp, _space, text = line.partition(" ")
                self.resume.wrote(stamp)
                await self._write(text)
                new += 1
        return None if skip else new

    async def follow(self, container_done: trio.Event, *, grace: float) -> None:
        """Follow until a whole stream that began after the container was done brought nothing
        new (a stream can be cut at any time, even then); take a cut stream up again. The caller
        bounds how long the last lines may take after the container ended."""
        outage = Outage(grace)
        while True:
            done_before = container_done.is_set()
            try:
                new = await self.follow_once()
                outage.reset()
            except ApiUnreachable as error:
                await outage.wait_or_give_up(error)
                continue
            if done_before:
                if new == 0:
                    return
                continue
            # The stream ended while the container may still run: wait a moment for the
            # watch to say it ended, then take the stream up again either way.
            with trio.move_on_after(0.5):
                await container_done.wait()
