"""``subscriptions/listen``: the stateless era's long-lived notification streams.

A client opens a stream with a filter of the notifications it wants; the server acknowledges
with the part of the filter it honours, then pushes only those notifications, each tagged with
the subscription id (the listen request's JSON-RPC id). Producers never block on a slow
listener: each stream has a bounded queue and a full queue drops the notification (list_changed
notifications only say "look again", so a dropped one costs nothing that a later one won't fix).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import attrs
import trio

from ..protocol._errors import McpError
from ..protocol._messages import INVALID_PARAMS, JsonObject, RequestId
from ..protocol._versions import META_SUBSCRIPTION_ID

SendNotification = Callable[[str, JsonObject], Awaitable[None]]

# Filter member -> the notification it selects.
_LIST_CHANGED: Final = {
    "toolsListChanged": "tools",
    "promptsListChanged": "prompts",
    "resourcesListChanged": "resources",
}


@attrs.define(eq=False)
class _Listener:
    subscription_id: RequestId
    notifications: JsonObject
    outbox: trio.MemorySendChannel[tuple[str, JsonObject]]

    def offer(self, method: str, params: JsonObject) -> None:
        tagged = {**params, "_meta": {META_SUBSCRIPTION_ID: self.subscription_id}}
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self.outbox.send_nowait((method, tagged))


def _agree(offer: frozenset[str], requested: Mapping[str, Any]) -> JsonObject:
    agreed: JsonObject = {}
    for key, value in requested.items():
        if key not in offer:
            continue
        if key == "resourceSubscriptions":
            if isinstance(value, list) and all(isinstance(uri, str) for uri in value):
                agreed[key] = list(value)
        elif value is True:
            agreed[key] = True
    return agreed


@attrs.define(eq=False)
class ListenRegistry:
    """The open listen streams of one server."""

    max_queued: int = 256
    _listeners: set[_Listener] = attrs.field(factory=set)
    _closed: bool = False

    @property
    def count(self) -> int:
        return len(self._listeners)

    async def listen(
        self,
        offer: frozenset[str],
        params: Mapping[str, Any],
        subscription_id: RequestId,
        send: SendNotification,
    ) -> JsonObject:
        """Serve one listen stream until the client leaves (cancelled) or the server closes."""
        requested = params.get("notifications")
        if not isinstance(requested, dict):
            raise McpError(INVALID_PARAMS, "subscriptions/listen needs a notifications filter")
        agreed = _agree(offer, requested)
        meta = {META_SUBSCRIPTION_ID: subscription_id}
        outbox, inbox = trio.open_memory_channel[tuple[str, JsonObject]](
            self.max_queued if self.max_queued >= 0 else math.inf
        )
        listener = _Listener(subscription_id, agreed, outbox)
        await send(
            "notifications/subscriptions/acknowledged", {"_meta": meta, "notifications": agreed}
        )
        if self._closed:
            return {"_meta": meta}
        self._listeners.add(listener)
        try:
            async with inbox:
                async for method, note_params in inbox:
                    await send(method, note_params)
        finally:
            self._listeners.discard(listener)
        # Only a server shutdown closes the outbox: end the subscription gracefully.
        return {"_meta": meta}

    def list_changed(self, kind: str) -> None:
        for listener in list(self._listeners):
            wanted = [key for key, value in _LIST_CHANGED.items() if value == kind]
            if any(listener.notifications.get(key) is True for key in wanted):
                listener.offer(f"notifications/{kind}/list_changed", {})

    def resource_updated(self, uri: str) -> None:
        for listener in list(self._listeners):
            if uri in listener.notifications.get("resourceSubscriptions", ()):
                listener.offer("notifications/resources/updated", {"uri": uri})

    def close(self) -> None:
        """End every listen stream with its result (server shutdown)."""
        self._closed = True
        for listener in list(self._listeners):
            listener.outbox.close()
