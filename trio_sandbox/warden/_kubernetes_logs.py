"""The Pod's log, followed onto the warden's stdout: where the host reads the CA block.

The log is asked for with timestamps, so that a stream that was cut (the API server or a proxy
closing it, a short outage) is taken up again from the last line written: ``sinceTime`` has
whole seconds, and lines of that second already written are skipped by their timestamps.
The same parser as the host's (``trio_sandbox.tls.CaBlockParser``) notes when the block has
gone by, so that a Pod that ends before it is reported with its last lines.
"""

from __future__ import annotations

import collections
import sys

import attrs
import trio

from ..tls import CaBlockError, CaBlockParser
from ._kubernetes_api import ApiUnreachable, KubeApi
from ._kubernetes_status import Outage

TAIL_LINES = 20


def timestamp_key(stamp: str) -> tuple[str, int]:
    """RFC 3339 with up to nine fraction digits as a sortable key (the kubelet trims zeros)."""
    whole, _dot, fraction = stamp.rstrip("Z").partition(".")
    return whole, int((fraction + "000000000")[:9] or 0)


def since_time(stamp: str) -> str:
    """The whole second of ``stamp``, as ``sinceTime`` takes it."""
    return stamp.rstrip("Z").partition(".")[0] + "Z"


@attrs.define(eq=False)
class LogFollower:
    """Writes the Pod's log lines to ``out`` as they come, once each."""

    kube: KubeApi
    pod: str
    out: trio.abc.SendStream
    parser: CaBlockParser = attrs.field(factory=CaBlockParser)
    block_seen: trio.Event = attrs.field(factory=trio.Event)
    tail: collections.deque[str] = attrs.field(factory=lambda: collections.deque(maxlen=TAIL_LINES))
    last_stamp: str | None = None

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

    async def follow_once(self) -> int:
        """One log request, until its stream ends; how many new lines it brought."""
        new = 0
        since = since_time(self.last_stamp) if self.last_stamp is not None else None
        last_key = timestamp_key(self.last_stamp) if self.last_stamp is not None else None
        async with self.kube.log_lines(self.pod, since_time=since) as lines:
            async for line in lines:
                stamp, _space, text = line.partition(" ")
                key = timestamp_key(stamp)
                if last_key is not None and key <= last_key:
                    continue  # written before the stream was cut
                self.last_stamp, last_key = stamp, key
                await self._write(text)
                new += 1
        return new

    async def follow(self, container_done: trio.Event, *, grace: float) -> None:
        """Follow until a stream that began after the container was done brought nothing new
        (a stream can be cut at any time, even then); take a cut stream up again."""
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
