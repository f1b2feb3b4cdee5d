"""The Kubernetes API as the back end uses it, on kr8s (anyio + httpx, so it runs on Trio).

kr8s finds the cluster the way kubectl does (in-cluster service account, ``$KUBECONFIG``, the
current context or a named one), authenticates (tokens, client certificates, exec plugins) and
speaks HTTP and WebSocket. Its object layer (python-box objects, kind discovery) and its
``PortForward`` (asyncio only, as its own documentation says) are not used: requests go through
``Api.call_api`` and ``Api.open_websocket`` with the paths of the few resources the back end
needs, and every failure becomes a :class:`KubernetesError` that names the reason.

Imported only by the kubernetes back end, after Trio started (kr8s takes ~0.4 s to import).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import attrs
import httpx
import kr8s
import kr8s.asyncio
import trio

from .._errors import ApiUnreachable, KubernetesError
from ._pod import JsonObject

# (API version, plural) of the resources the back end touches.
PODS = ("v1", "pods")
EVENTS = ("v1", "events")
NETWORK_POLICIES = ("networking.k8s.io/v1", "networkpolicies")
SANDBOXES = ("agents.x-k8s.io/v1alpha1", "sandboxes")
SANDBOX_CLAIMS = ("extensions.agents.x-k8s.io/v1alpha1", "sandboxclaims")
SANDBOX_TEMPLATES = ("extensions.agents.x-k8s.io/v1alpha1", "sandboxtemplates")
SANDBOX_WARM_POOLS = ("extensions.agents.x-k8s.io/v1alpha1", "sandboxwarmpools")
Resource = tuple[str, str]

_UNREACHABLE = (httpx.TransportError, OSError, trio.BrokenResourceError)


def _server_error(error: kr8s.ServerError) -> KubernetesError:
    status: Mapping[str, Any] = error.status if isinstance(error.status, Mapping) else {}
    code = error.response.status_code if error.response is not None else 0
    reason = str(status.get("reason") or (f"HTTP {code}" if code else "Error"))
    message = str(status.get("message") or error)
    if code >= 500:
        return ApiUnreachable(reason, f"the API server failed: {message}")
    return KubernetesError(reason, message)


@contextlib.contextmanager
def api_errors(what: str) -> Iterator[None]:
    """Turn kr8s and transport failures of ``what`` into KubernetesError."""
    try:
        yield
    except kr8s.ServerError as error:
        converted = _server_error(error)
        raise type(converted)(converted.reason, f"{what}: {converted.message}") from None
    except _UNREACHABLE as error:
        raise ApiUnreachable(
            "Unreachable", f"{what}: the API server is unreachable ({error!r})"
        ) from None


@attrs.define(eq=False)
class KubeApi:
    """One cluster connection, in one namespace."""

    api: Any  # kr8s.asyncio.Api: untyped
    namespace: str

    def _path(self, resource: Resource, name: str | None = None, sub: str | None = None) -> str:
        plural = resource[1]
        return "/".join(part for part in (plural, name, sub) if part)

    async def request(
        self,
        method: str,
        resource: Resource,
        name: str | None = None,
        *,
        sub: str | None = None,
        params: Mapping[str, str] | None = None,
        body: JsonObject | None = None,
    ) -> JsonObject:
        kwargs: dict[str, Any] = {}
        if params:
            kwargs["params"] = dict(params)
        if body is not None:
            kwargs["content"] = json.dumps(body)
        async with self.api.call_api(
            method,
            version=resource[0],
            namespace=self.namespace,
            url=self._path(resource, name, sub),
            **kwargs,
        ) as response:
            result: JsonObject = response.json()
            return result

    async def create(self, resource: Resource, manifest: JsonObject) -> JsonObject:
        kind = manifest.get("kind", resource[1])
        with api_errors(f"cannot create {kind} {manifest['metadata']['name']}"):
            return await self.request("POST", resource, body=manifest)

    async def get(self, resource: Resource, name: str) -> JsonObject | None:
        """The object, or None when it does not exist."""
        try:
            with api_errors(f"cannot read {resource[1]}/{name}"):
                return await self.request("GET", resource, name)
        except KubernetesError as error:
            if error.reason == "NotFound":
                return None
            raise

    async def delete(
        self, resource: Resource, name: str, *, grace_seconds: int | None = None
    ) -> bool:
        """Delete (in the background); False when it was gone already."""
        params = {"propagationPolicy": "Background"}
        if grace_seconds is not None:
            params["gracePeriodSeconds"] = str(grace_seconds)
        try:
            with api_errors(f"cannot delete {resource[1]}/{name}"):
                await self.request("DELETE", resource, name, params=params)
        except KubernetesError as error:
            if error.reason == "NotFound":
                return False
            raise
        return True

    async def list_objects(self, resource: Resource, *, label_selector: str) -> list[JsonObject]:
        with api_errors(f"cannot list {resource[1]}"):
            listing = await self.request("GET", resource, params={"labelSelector": label_selector})
        items: list[JsonObject] = listing.get("items") or []
        return items

    @contextlib.asynccontextmanager
    async def _stream_lines(
        self, what: str, version: str, url: str, params: Mapping[str, str]
    ) -> AsyncIterator[AsyncIterator[str]]:
        """A streamed GET as lines; only the API's own failures become KubernetesError."""
        async with contextlib.AsyncExitStack() as stack:
            with api_errors(what):
                response = await stack.enter_async_context(
                    self.api.call_api(
                        "GET",
                        version=version,
                        namespace=self.namespace,
                        url=url,
                        params=dict(params),
                        stream=True,
                        timeout=None,
                    )
                )

            async def lines() -> AsyncGenerator[str]:
                with api_errors(f"{what}: the stream broke"):
                    async for line in response.aiter_lines():
                        yield line

            iterator = lines()
            async with contextlib.aclosing(iterator):
                yield iterator

    @contextlib.asynccontextmanager
    async def watch(
        self, resource: Resource, name: str, resource_version: str
    ) -> AsyncIterator[AsyncIterator[tuple[str, JsonObject]]]:
        """Events of one object from ``resource_version`` on; the iterator ends with the stream."""
        params = {
            "watch": "true",
            "fieldSelector": f"metadata.name={name}",
            "resourceVersion": resource_version,
        }
        what = f"cannot watch {resource[1]}/{name}"
        async with self._stream_lines(what, resource[0], resource[1], params) as lines:

            async def events() -> AsyncGenerator[tuple[str, JsonObject]]:
                async for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        yield str(event["type"]), event["object"]

            iterator = events()
            async with contextlib.aclosing(iterator):
                yield iterator

    def log_lines(self, pod: str, *, since_time: str | None) -> Any:
        """Follow the log of the Pod's container, each line with its RFC 3339 timestamp
        (an async context manager of an iterator of lines)."""
        params = {"follow": "true", "timestamps": "true", "container": "sandbox"}
        if since_time is not None:
            params["sinceTime"] = since_time
        what = f"cannot follow the log of Pod {pod}"
        return self._stream_lines(what, "v1", f"pods/{pod}/log", params)

    async def events_of(self, name: str) -> list[str]:
        """The events that name the object, oldest first, as ``REASON: message`` lines."""
        try:
            with api_errors(f"cannot read the events of {name}"):
                listing = await self.request(
                    "GET", EVENTS, params={"fieldSelector": f"involvedObject.name={name}"}
                )
        except KubernetesError as error:
            return [f"(no events: {error.message})"]
        items = sorted(
            listing.get("items") or [],
            key=lambda event: str(event.get("lastTimestamp") or event.get("eventTime") or ""),
        )
        return [
            f"{event.get('type', 'Normal')} {event.get('reason', '?')}: {event.get('message', '')}"
            for event in items
        ]

    def websocket(
        self,
        pod: str,
        sub: str,
        params: Mapping[str, Any],
        subprotocols: Sequence[str],
        **options: Any,
    ) -> Any:
        """``pods/POD/SUB`` upgraded to a WebSocket (an httpx-ws session context manager)."""
        return self.api.open_websocket(
            version="v1",
            namespace=self.namespace,
            url=f"pods/{pod}/{sub}",
            params=dict(params),
            subprotocols=list(subprotocols),
            **options,
        )


@contextlib.asynccontextmanager
async def open_kube_api(
    *, kubeconfig: str | None, context: str | None, namespace: str | None
) -> AsyncIterator[KubeApi]:
    """Connect as kubectl would; the namespace defaults to the context's (or the service
    account's, in a cluster), then ``default``."""
    try:
        with api_errors("cannot reach the cluster"):
            api = await kr8s.asyncio.api(
                kubeconfig=kubeconfig, context=context, namespace=namespace
            )
    except (ValueError, KeyError, FileNotFoundError) as error:
        raise KubernetesError(
            "Configuration",
            f"no usable cluster configuration (kubeconfig or service account): {error}",
        ) from None
    try:
        yield KubeApi(api, namespace or str(api.namespace))
    finally:
        session = getattr(api, "_session", None)
        if session is not None:
            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await session.aclose()
