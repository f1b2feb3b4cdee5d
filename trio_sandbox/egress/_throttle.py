"""A token bucket that slows a client down instead of doing work for it.

Each new connection and each further request on a kept-alive one takes a token; tokens come
back at ``rate`` per second up to ``burst``. A client past its rate waits (a sleep costs nothing)
and, while the accept loop waits, its new connections wait in the kernel's listen backlog: a
sandbox that loops on refused requests is held to ``rate`` decisions a second, so what it can
make the host do is bounded however fast it asks.
"""

from __future__ import annotations

from typing import Final

import attrs
import trio

DEFAULT_RATE: Final = 50.0
DEFAULT_BURST: Final = 100


@attrs.define(eq=False)
class Throttle:
    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    # Tokens at ``_at`` (trio time); negative: that many are promised to clients waiting.
    _tokens: float | None = None
    _at: float = 0.0

    def __attrs_post_init__(self) -> None:
        if not (self.rate > 0 and self.burst >= 1):
            raise ValueError(
                f"a throttle needs rate > 0 and burst >= 1, not {self.rate}, {self.burst}"
            )

    async def take(self) -> None:
        """Take a token, waiting until one is due (each waiter for its own)."""
        now = trio.current_time()
        tokens = self.burst if self._tokens is None else self._tokens
        tokens = min(float(self.burst), tokens + (now - self._at) * self.rate)
        self._tokens, self._at = tokens - 1, now
        if tokens >= 1:
            await trio.lowlevel.checkpoint()
        else:
            await trio.sleep((1 - tokens) / self.rate)
