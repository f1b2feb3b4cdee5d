"""Watching one object through outages, and what a Pod's status says.

A watch ends now and then (the API server's timeout, a 410 Gone): it is started again from the
last resource version, or from a fresh read. An unreachable API server is retried with a
doubling pause until ``grace`` seconds passed without an answer; then the sandbox is given up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
import trio

from .._errors import ApiUnreachable, KubernetesError
from ._api import KubeApi, Resource
from ._pod import CONTAINER_NAME, JsonObject

T = TypeVar("T")
_FIRST_PAUSE = 0.1
_LONGEST_PAUSE = 2.0

# Waiting reasons after which the container will not start without someone changing something.
FATAL_WAITING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@attrs.define(eq=False)
class Outage:
    """Counts how long the API server has been unreachable, across retries."""

    grace: float
    since: float | None = None
    pause: float = _FIRST_PAUSE

    def reset(self) -> None:
        self.since = None
        self.pause = _FIRST_PAUSE

    async def wait_or_give_up(self, error: ApiUnreachable) -> None:
        now = trio.current_time()
        if self.since is None:
            self.since = now
        if now - self.since >= self.grace:
            raise KubernetesError(
                "Unreachable",
                f"the API server has been unreachable for {self.grace:g} s ({error.message})",
            )
        await trio.sleep(self.pause)
        self.pause = min(self.pause * 2, _LONGEST_PAUSE)


async def follow_object(
    kube: KubeApi,
    resource: Resource,
    name: str,
    decide: Callable[[JsonObject], Awaitable[T | None]],
    *,
    grace: float,
) -> T:
    """Call ``decide`` with each new state of the object until it returns something."""
    outage = Outage(grace)
    resource_version: str | None = None
    while True:
        try:
            if resource_version is None:
                current = await kube.get(resource, name)
                outage.reset()
                if current is None:
                    raise KubernetesError(
                        "Deleted", f"{resource[1]}/{name} does not exist (any more)"
                    )
                resource_version = str(current["metadata"].get("resourceVersion", ""))
                decided = await decide(current)
                if decided is not None:
                    return decided
            async with kube.watch(resource, name, resource_version) as events:
                outage.reset()
                async for kind, obj in events:
                    if kind == "ERROR":  # 410 Gone and the like: read afresh
                        resource_version = None
                        break
                    if kind == "DELETED":
                        raise KubernetesError(
                            "Deleted", f"{resource[1]}/{name} was deleted by someone else"
                        )
                    resource_version = str(obj["metadata"].get("resourceVersion", resource_version))
                    decided = await decide(obj)
                    if decided is not None:
                        return decided
        except ApiUnreachable as error:
            await outage.wait_or_give_up(error)


def container_state(pod: JsonObject) -> tuple[str, JsonObject]:
    """(``waiting`` | ``running`` | ``terminated`` | ``unknown``, its details) of the container."""
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER_NAME:
            for state in ("terminated", "running", "waiting"):
                details = (status.get("state") or {}).get(state)
                if details is not None:
                    return state, details
    return "unknown", {}


def unschedulable_message(pod: JsonObject) -> str | None:
    for condition in pod.get("status", {}).get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return str(condition.get("message") or "no node fits the Pod")
    return None


@attrs.frozen
class PodEnded:
    """The container's end: its exit status and the kubelet's reason."""

    exit_code: int
    reason: str


def pod_failure(pod: JsonObject) -> KubernetesError | None:
    """An error for a Pod that failed as a whole (deadline, eviction), else None."""
    status = pod.get("status", {})
    if status.get("phase") != "Failed":
        return None
    reason = str(status.get("reason") or "")
    if reason == "DeadlineExceeded":
        deadline = pod.get("spec", {}).get("activeDeadlineSeconds")
        return KubernetesError(
            "DeadlineExceeded",
            f"Pod {pod['metadata']['name']} ran past its deadline (activeDeadlineSeconds"
            f" {deadline}) and was stopped by the kubelet",
        )
    if reason:
        message = status.get("message") or "the Pod failed"
        return KubernetesError(reason, f"Pod {pod['metadata']['name']}: {message}")
    return None


def ended(pod: JsonObject) -> PodEnded | None:
    state, details = container_state(pod)
    if state != "terminated":
        return None
    return PodEnded(int(details.get("exitCode", 1)), str(details.get("reason") or ""))


def fatal_waiting(pod: JsonObject) -> KubernetesError | None:
    state, details = container_state(pod)
    reason = str(details.get("reason") or "")
    if state == "waiting" and reason in FATAL_WAITING_REASONS:
        message = details.get("message") or reason
        return KubernetesError(
            reason, f"the container of Pod {pod['metadata']['name']} cannot start: {message}"
        )
    return None
