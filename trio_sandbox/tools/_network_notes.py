"""``[network] refused: ...`` lines for a command's result (``network = allow`` only).

A refused destination reaches the command as a 403 or a SOCKS refusal, which many tools print
vaguely ("CONNECT tunnel failed") or not at all. After each command the tool server asks the
sandbox's egress proxy which destinations it refused or could not reach since the command
started, and names them at the end of the result, so the agent learns why and which setting
would allow it. Commands running at the same time see each other's refusals (the proxy cannot
tell which process opened a connection).

The proxy answers with its own sandbox's refusals only, in the words the sandbox may read (no
address a name resolved to); the notes are part of a command's result, which the host treats as
the sandbox's output like any other: nothing here is trusted by the host.
"""

from __future__ import annotations

import os
import time

import attrs
import trio

from ..contract import EGRESS_PROXY_VARIABLE

_ASK_TIMEOUT_SECONDS = 2.0


@attrs.frozen
class NetworkNotes:
    """Where the egress proxy listens (``HOST:PORT``); None: the sandbox has no such proxy."""

    proxy: str | None

    @classmethod
    def from_environment(cls) -> NetworkNotes:
        return cls(os.environ.get(EGRESS_PROXY_VARIABLE) or None)

    @staticmethod
    def now() -> float:
        """The moment a command starts, on the clock the proxy (outside) stamps refusals with."""
        return time.time()

    async def since(self, started: float) -> str:
        """The note lines (each ending in a newline) for refusals since ``started``."""
        if self.proxy is None:
            return ""
        # Only a sandbox with an egress proxy needs its client, after the start (the import
        # costs the tool server's start-up some 17 ms).
        from ..egress import EventLine, ask_refusals

        host, _, port = self.proxy.rpartition(":")
        try:
            with trio.fail_after(_ASK_TIMEOUT_SECONDS):
                lines = await ask_refusals(host, int(port), started)
        except (OSError, ValueError, trio.TooSlowError) as error:
            return f"[network] could not ask the egress proxy for refusals: {error!r}\n"
        # The same refusal repeated (a retry loop) is one note with its count.
        counts: dict[str, int] = {}
        for line in lines:
            event = EventLine.parse(line)
            if event is not None:
                note = f"[network] {event.verdict.value}: {event.target} ({event.detail})"
                counts[note] = counts.get(note, 0) + 1
        return "".join(
            f"{note} ({count} times)\n" if count > 1 else f"{note}\n"
            for note, count in counts.items()
        )
