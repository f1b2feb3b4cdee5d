"""A test double of the Kubernetes API server: what the kubernetes back end uses, over HTTPS.

``open_kube_double`` serves, on 127.0.0.1 with its own CA and bearer tokens:

- discovery (``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/GROUP/VERSION``), so that
  kubectl and the official Python client drive it too;
- pods: create (admission: the restricted Pod Security profile, a pod quota, RBAC by token,
  known runtime classes), get, list, watch (from any resource version), delete (graceful);
  ``pods/log`` (follow, timestamps, sinceTime); ``pods/portforward`` over WebSocket
  (``v4.channel.k8s.io``: port announcements, data and error channels);
- events (field selector ``involvedObject.name``), network policies, agent-sandbox Sandboxes
  and SandboxClaims (a minimal controller makes their Pods), SandboxTemplates and
  SandboxWarmPools (the pool keeps ``replicas`` Sandboxes with their Pods; a claim naming the
  pool binds at once to one whose Pod runs, else to a fresh one, and the pool starts a
  replacement); their fields are checked (:mod:`kube_agent_sandbox`).

Each Pod's container runs in the local bubblewrap sandbox (:mod:`kube_kubelet`), so the real
tool server, the real mutual TLS and the real tunnel code run end to end. Faults on request:
``cut_log_streams`` (end the next log streams after N lines), ``portforward_error`` (an error
frame instead of a connection), ``kubelet.coarse_log_clock`` (log timestamps in whole seconds).
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import attrs
import trio

from tests.kubernetes.kube_agent_sandbox import validate
from tests.kubernetes.kube_kubelet import Kubelet, PodRuntime
from tests.kubernetes.kube_store import (
    KINDS,
    ApiStatusError,
    JsonObject,
    Store,
    now_rfc3339,
    restricted_violations,
)
from trio_sandbox.mcp import serve_http
from trio_sandbox.tls import CertificateChain

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.4", "platform": "linux/amd64"}
ADMIN_TOKEN = "kube-double-admin-token"
# What the README's Role grants: enough for the back end.
SANDBOX_ROLE = frozenset(
    {
        "create pods",
        "get pods",
        "list pods",
        "watch pods",
        "delete pods",
        "get pods/log",
        "create pods/portforward",
        "get pods/portforward",
        "list events",
        "create networkpolicies",
        "get networkpolicies",
        "list networkpolicies",
        "delete networkpolicies",
    }
)
_SUBRESOURCES = {"log", "portforward", "exec"}
_RESOURCE_LISTS: dict[str, list[JsonObject]] = {
    "v1": [
        {
            "name": "pods",
            "namespaced": True,
            "kind": "Pod",
            "verbs": ["create", "delete", "get", "list", "watch"],
            "shortNames": ["po"],
        },
        {"name": "pods/log", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
        {
            "name": "pods/portforward",
            "namespaced": True,
            "kind": "PodPortForwardOptions",
            "verbs": ["create", "get"],
        },
        {
            "name": "events",
            "namespaced": True,
            "kind": "Event",
            "verbs": ["list", "get"],
            "shortNames": ["ev"],
        },
        {
            "name": "persistentvolumeclaims",
            "namespaced": True,
            "kind": "PersistentVolumeClaim",
            "verbs": ["get", "list"],
            "shortNames": ["pvc"],
        },
    ],
    "networking.k8s.io/v1": [
        {
            "name": "networkpolicies",
            "namespaced": True,
            "kind": "NetworkPolicy",
            "verbs": ["create", "delete", "get", "list", "watch"],
            "shortNames": ["netpol"],
        },
    ],
    "agents.x-k8s.io/v1alpha1": [
        {
            "name": "sandboxes",
            "namespaced": True,
            "kind": "Sandbox",
            "verbs": ["create", "delete", "get", "list", "watch"],
        },
    ],
    "extensions.agents.x-k8s.io/v1alpha1": [
        {
            "name": "sandboxclaims",
            "namespaced": True,
            "kind": "SandboxClaim",
            "verbs": ["create", "delete", "get", "list", "watch"],
        },
        {
            "name": "sandboxtemplates",
            "namespaced": True,
            "kind": "SandboxTemplate",
            "verbs": ["create", "delete", "get", "list"],
        },
        {
            "name": "sandboxwarmpools",
            "namespaced": True,
            "kind": "SandboxWarmPool",
            "verbs": ["create", "delete", "get", "list"],
        },
    ],
}


@attrs.frozen
class Request:
    user: str
    verb: str
    resource: str
    namespace: str
    name: str


@attrs.define(eq=False)
class KubeDouble:
    store: Store
    kubelet: Kubelet
    chain: CertificateChain
    url: str = ""
    kubeconfig: Path = Path()
    # token -> (user, allowed "verb resource" strings; None: everything)
    tokens: dict[str, tuple[str, frozenset[str] | None]] = attrs.field(factory=dict)
    pod_quota: dict[str, int] = attrs.field(factory=dict)
    runtime_classes: frozenset[str] = frozenset({"kata", "gvisor"})
    requests: list[Request] = attrs.field(factory=list)
    # Faults.
    cut_log_streams: list[int] = attrs.field(factory=list)  # lines before each next log stream ends
    portforward_error: str | None = None
    _claim_serial: int = 0
    _pool_serial: int = 0
    # Pod name -> when each port-forward connection to it brought its first byte from the Pod.
    first_bytes: dict[str, list[float]] = attrs.field(factory=dict)

    # ---- what tests look at and arrange -------------------------------------------------

    def pods(self, namespace: str = "default") -> list[JsonObject]:
        return self.store.list("pods", namespace)

    def objects(self, plural: str, namespace: str = "default") -> list[JsonObject]:
        return self.store.list(plural, namespace)

    def runtime(self, name: str, namespace: str = "default") -> PodRuntime | None:
        return self.kubelet.runtimes.get((namespace, name))

    def add_claim(self, name: str, directory: Path, namespace: str = "default") -> None:
        self.kubelet.claims[(namespace, name)] = directory
        self.store.add(
            "persistentvolumeclaims",
            namespace,
            {"metadata": {"name": name}, "spec": {}, "status": {"phase": "Bound"}},
        )

    def add_object(self, plural: str, manifest: JsonObject, namespace: str = "default") -> None:
        self.store.add(plural, namespace, manifest)

    def write_kubeconfig(
        self,
        path: Path,
        *,
        token: str = ADMIN_TOKEN,
        namespace: str | None = None,
        server: str | None = None,
    ) -> Path:
        """A kubeconfig (JSON is YAML) with this double as the current context."""
        context: JsonObject = {"cluster": "kube-double", "user": "tester"}
        if namespace is not None:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kube-double",
                    "cluster": {
                        "server": server or self.url,
                        "certificate-authority-data": base64.b64encode(
                            self.chain.ca_cert_pem().encode()
                        ).decode(),
                    },
                }
            ],
            "users": [{"name": "tester", "user": {"token": token}}],
            "contexts": [{"name": "double", "context": context}],
            "current-context": "double",
        }
        path.write_text(json.dumps(config, indent=2))
        return path

    def grant(self, token: str, user: str, allowed: frozenset[str] | None) -> None:
        self.tokens[token] = (user, allowed)

    # ---- the HTTP face --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        try:
            await self._http(scope, receive, send)
        except ApiStatusError as error:
            await _send_json(send, error.code, error.status())

    def _authenticate(self, scope: Scope) -> tuple[str, frozenset[str] | None]:
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization", b"").decode()
        token = authorization.removeprefix("Bearer ").strip()
        if token not in self.tokens:
            raise ApiStatusError(401, "Unauthorized", "Unauthorized")
        return self.tokens[token]

    def _authorize(
        self,
        who: tuple[str, frozenset[str] | None],
        verb: str,
        resource: str,
        namespace: str,
        name: str,
        group: str,
    ) -> None:
        user, allowed = who
        self.requests.append(Request(user, verb, resource, namespace, name))
        if allowed is None or f"{verb} {resource}" in allowed:
            return
        plural, _, sub = resource.partition("/")
        what = f'{plural} "{name}"' if name else plural
        sub_text = f'resource "{plural}" in API group "{group}"' + (
            f' subresource "{sub}"' if sub else ""
        )
        raise ApiStatusError(
            403,
            "Forbidden",
            f'{what} is forbidden: User "{user}" cannot {verb} {sub_text}'
            f' in the namespace "{namespace}"',
        )

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].rstrip("/")
        query = dict(urllib.parse.parse_qsl(scope.get("query_string", b"").decode()))
        who = self._authenticate(scope)
        discovery = self._discovery(path)
        if discovery is not None:
            await _send_json(send, 200, discovery)
            return
        route = _route(path)
        if route is None:
            raise ApiStatusError(
                404, "NotFound", f"the server could not find the requested resource ({path})"
            )
        group, namespace, plural, name, sub = route
        method = scope["method"]
        body = await _read_body(receive) if method in ("POST", "PUT", "PATCH") else b""
        if sub:
            if sub != "log" or method != "GET":
                raise ApiStatusError(405, "MethodNotAllowed", f"{method} {sub} is not served here")
            self._authorize(who, "get", f"{plural}/log", namespace, name, "")
            await self._log(send, receive, namespace, name, query)
            return
        if plural == "sandboxwarmpools":
            self.refresh_pool_status(namespace)
        if method == "GET" and name:
            self._authorize(who, "get", plural, namespace, name, group)
            await _send_json(send, 200, self.store.get(plural, namespace, name))
        elif method == "GET" and query.get("watch") in ("true", "1"):
            self._authorize(who, "watch", plural, namespace, "", group)
            await self._watch(send, receive, plural, namespace, query)
        elif method == "GET":
            self._authorize(who, "list", plural, namespace, "", group)
            items = self.store.list(
                plural,
                namespace,
                labels=query.get("labelSelector", ""),
                fields=query.get("fieldSelector", ""),
            )
            kind = KINDS[(group, plural)]
            listing = {
                "kind": f"{kind}List",
                "apiVersion": group,
                "metadata": {"resourceVersion": str(self.store.version)},
                "items": items,
            }
            await _send_json(send, 200, listing)
        elif method == "POST" and not name:
            manifest = json.loads(body)
            self._authorize(
                who,
                "create",
                plural,
                namespace,
                manifest.get("metadata", {}).get("name", ""),
                group,
            )
            await _send_json(send, 201, self._create(plural, namespace, manifest))
        elif method == "DELETE" and name:
            self._authorize(who, "delete", plural, namespace, name, group)
            await _send_json(send, 200, await self._delete(plural, namespace, name, query))
        else:
            raise ApiStatusError(405, "MethodNotAllowed", f"{method} {path} is not served here")

    def _discovery(self, path: str) -> JsonObject | None:
        if path == "/version":
            return VERSION
        if path == "/api":
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
                ],
            }
        if path == "/apis":
            groups = []
            for version in _RESOURCE_LISTS:
                if "/" in version:
                    group, _, number = version.partition("/")
                    entry = {"groupVersion": version, "version": number}
                    groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        group_version = (
            path.removeprefix("/api/").removeprefix("/apis/")
            if path.startswith(("/api/", "/apis/"))
            else None
        )
        if group_version in _RESOURCE_LISTS:
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
                "resources": _RESOURCE_LISTS[group_version],
            }
        return None

    # ---- resources --------------------------------------------------------------------------

    def _create(self, plural: str, namespace: str, manifest: JsonObject) -> JsonObject:
        if plural == "pods":
            self._admit_pod(namespace, manifest)
        if plural in ("sandboxtemplates", "sandboxwarmpools", "sandboxclaims"):
            validate(plural, manifest)
        created = self.store.add(plural, namespace, manifest)
        if plural == "pods":
            self.kubelet.admit(namespace, created["metadata"]["name"])
        elif plural == "sandboxes":
            template = manifest["spec"]["podTemplate"]
            self._controller_pod(
                namespace,
                manifest["metadata"]["name"],
                template.get("metadata") or {},
                template["spec"],
                manifest,
            )
        elif plural == "sandboxclaims":
            self._claim(namespace, manifest)
        elif plural == "sandboxwarmpools":
            self._fill_pool(namespace, manifest["metadata"]["name"])
        return created

    def _admit_pod(self, namespace: str, manifest: JsonObject) -> None:
        name = manifest.get("metadata", {}).get("name", "")
        spec = manifest.get("spec") or {}
        containers = spec.get("containers") or []
        if not containers or not all(c.get("name") and c.get("image") for c in containers):
            raise ApiStatusError(
                422,
                "Invalid",
                f'Pod "{name}" is invalid: spec.containers: every container needs a name and'
                " an image",
            )
        violations = restricted_violations(spec)
        if violations:
            raise ApiStatusError(
                403,
                "Forbidden",
                f'pods "{name}" is forbidden: violates PodSecurity "restricted:latest": '
                + ", ".join(violations),
            )
        runtime_class = spec.get("runtimeClassName")
        if runtime_class is not None and runtime_class not in self.runtime_classes:
            raise ApiStatusError(
                403,
                "Forbidden",
                f'pods "{name}" is forbidden: pod rejected: RuntimeClass "{runtime_class}"'
                " not found",
            )
        quota = self.pod_quota.get(namespace)
        if quota is not None and len(self.store.list("pods", namespace)) >= quota:
            used = len(self.store.list("pods", namespace))
            raise ApiStatusError(
                403,
                "Forbidden",
                f'pods "{name}" is forbidden: exceeded quota: sandbox-quota, requested: pods=1,'
                f" used: pods={used}, limited: pods={quota}",
            )

    def _controller_pod(
        self,
        namespace: str,
        name: str,
        metadata: JsonObject,
        spec: JsonObject,
        owner: JsonObject,
        *,
        report_to: JsonObject | None = None,
    ) -> None:
        """What the agent-sandbox controller does: a Pod from the template, owned by ``owner``
        (a refusal is an event on ``report_to``, else on the owner)."""
        pod = {
            "metadata": {
                "name": name,
                "labels": dict(metadata.get("labels") or {}),
                "annotations": dict(metadata.get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": owner["apiVersion"],
                        "kind": owner["kind"],
                        "name": owner["metadata"]["name"],
                        "controller": True,
                    }
                ],
            },
            "spec": json.loads(json.dumps(spec)),
        }
        try:
            self._admit_pod(namespace, pod)
        except ApiStatusError as error:
            self.store.event(
                namespace, report_to or owner, "Warning", "FailedCreate", error.message
            )
            return
        self.store.add("pods", namespace, pod)
        self.kubelet.admit(namespace, name)

    # ---- warm pools -------------------------------------------------------------------------

    def _members(self, namespace: str, kind: str, owner: str) -> list[JsonObject]:
        return [
            sandbox
            for sandbox in self.store.list("sandboxes", namespace)
            if any(
                ref["kind"] == kind and ref["name"] == owner
                for ref in sandbox["metadata"].get("ownerReferences") or []
            )
        ]

    def _pod_running(self, namespace: str, name: str) -> bool:
        pod = self.store.objects.get(("pods", namespace, name))
        return (
            pod is not None
            and pod.get("status", {}).get("phase") == "Running"
            and "deletionTimestamp" not in pod["metadata"]
        )

    def _new_sandbox(
        self,
        namespace: str,
        prefix: str,
        template: JsonObject,
        owner: JsonObject,
        extra: JsonObject,
        report_to: JsonObject,
    ) -> str:
        """A Sandbox of the template owned by ``owner``, and its Pod."""
        self._pool_serial += 1
        name = f"{prefix}-{self._pool_serial:05d}"
        pod_template = json.loads(json.dumps(template["spec"]["podTemplate"]))
        metadata = pod_template.get("metadata") or {}
        metadata = {
            "labels": {**(metadata.get("labels") or {}), **(extra.get("labels") or {})},
            "annotations": {
                **(metadata.get("annotations") or {}),
                **(extra.get("annotations") or {}),
            },
        }
        sandbox = {
            "apiVersion": "agents.x-k8s.io/v1alpha1",
            "kind": "Sandbox",
            "metadata": {
                "name": name,
                "labels": dict(metadata["labels"]),
                "ownerReferences": [_owner_reference(owner)],
            },
            "spec": {"podTemplate": pod_template},
        }
        stored = self.store.add("sandboxes", namespace, sandbox)
        self._controller_pod(
            namespace, name, metadata, pod_template["spec"], stored, report_to=report_to
        )
        return name

    def _template_of(self, namespace: str, obj: JsonObject) -> JsonObject | None:
        name = obj["spec"]["sandboxTemplateRef"]["name"]
        template = self.store.objects.get(("sandboxtemplates", namespace, name))
        if template is None:
            self.store.event(
                namespace, obj, "Warning", "TemplateNotFound", f'SandboxTemplate "{name}" not found'
            )
        return template

    def _fill_pool(self, namespace: str, pool_name: str) -> None:
        """Start Sandboxes until the pool has ``replicas`` of its own (claimed ones left it)."""
        pool = self.store.objects.get(("sandboxwarmpools", namespace, pool_name))
        if pool is None:
            return
        template = self._template_of(namespace, pool)
        if template is None:
            return
        missing = int(pool["spec"]["replicas"]) - len(
            self._members(namespace, "SandboxWarmPool", pool_name)
        )
        for _ in range(missing):
            self._new_sandbox(namespace, pool_name, template, pool, {}, pool)

    def refresh_pool_status(self, namespace: str) -> None:
        """``status.replicas`` and ``readyReplicas`` of each pool, as its controller keeps them."""
        for (plural, ns, name), pool in list(self.store.objects.items()):
            if plural != "sandboxwarmpools" or ns != namespace:
                continue
            members = self._members(namespace, "SandboxWarmPool", name)
            ready = sum(self._pod_running(namespace, m["metadata"]["name"]) for m in members)
            status = {
                "replicas": len(members),
                "readyReplicas": ready,
                "selector": f"agents.x-k8s.io/pool={name}",
            }
            if pool.get("status") != status:
                pool["status"] = status
                self.store.update("sandboxwarmpools", namespace, name)

    def _claim_from_pool(self, namespace: str, claim: JsonObject, pool_name: str) -> None:
        """Bind at once to a pool Sandbox whose Pod runs (else a fresh one from the template,
        owned by the claim), hand it to the claim, label its Pod; the pool refills."""
        claim_name = claim["metadata"]["name"]
        stored = self.store.get("sandboxclaims", namespace, claim_name)
        extra = claim["spec"].get("additionalPodMetadata") or {}
        members = self._members(namespace, "SandboxWarmPool", pool_name)
        members.sort(key=lambda m: m["metadata"]["name"])
        # Only a ready one is adopted (agent-sandbox #395); else a cold start for the claim.
        chosen = next(
            (m for m in members if self._pod_running(namespace, m["metadata"]["name"])), None
        )
        if chosen is None:
            template = self._template_of(namespace, claim)
            if template is None:
                return
            name = self._new_sandbox(namespace, pool_name, template, stored, extra, stored)
        else:
            name = chosen["metadata"]["name"]
            sandbox = self.store.objects[("sandboxes", namespace, name)]
            sandbox["metadata"]["ownerReferences"] = [_owner_reference(stored)]
            self.store.update("sandboxes", namespace, name)
            pod = self.store.objects.get(("pods", namespace, name))
            if pod is not None:
                pod["metadata"].setdefault("labels", {}).update(extra.get("labels") or {})
                pod["metadata"].setdefault("annotations", {}).update(extra.get("annotations") or {})
                self.store.update("pods", namespace, name)
        stored["status"] = {"sandbox": {"name": name}}
        self.store.update("sandboxclaims", namespace, claim_name)
        self._fill_pool(namespace, pool_name)

    def _claim(self, namespace: str, claim: JsonObject) -> None:
        spec = claim["spec"]
        pool_name = spec.get("warmpool")
        if pool_name and ("sandboxwarmpools", namespace, pool_name) in self.store.objects:
            self._claim_from_pool(namespace, claim, pool_name)
            return
        template_name = (spec.get("sandboxTemplateRef") or {}).get("name", "")
        try:
            template = self.store.get("sandboxtemplates", namespace, template_name)
        except ApiStatusError:
            self.store.event(
                namespace,
                claim,
                "Warning",
                "TemplateNotFound",
                f'SandboxTemplate "{template_name}" not found',
            )
            return
        pod_template = template["spec"]["podTemplate"]
        pod_spec = json.loads(json.dumps(pod_template["spec"]))
        pod_spec["containers"][0].setdefault("env", []).extend(spec.get("env") or [])
        labels = {
            **(pod_template.get("metadata") or {}).get("labels", {}),
            **(spec.get("additionalPodMetadata") or {}).get("labels", {}),
        }
        self._claim_serial += 1
        pod_name = f"{spec.get('warmpool') or template_name}-{self._claim_serial:05d}"
        stored = self.store.get("sandboxclaims", namespace, claim["metadata"]["name"])
        stored["status"] = {"sandbox": {"name": pod_name}}
        self.store.update("sandboxclaims", namespace, claim["metadata"]["name"])
        self._controller_pod(namespace, pod_name, {"labels": labels}, pod_spec, stored)

    async def _delete(
        self, plural: str, namespace: str, name: str, query: Mapping[str, str]
    ) -> JsonObject:
        obj = self.store.get(plural, namespace, name)
        if plural != "pods":
            # Garbage collection: what it owns goes too (a claim's Sandbox, then its Pod).
            self.store.remove(plural, namespace, name)
            for child_plural in ("sandboxes", "pods"):
                for child in self.store.list(child_plural, namespace):
                    owners = child["metadata"].get("ownerReferences") or []
                    if any(o["name"] == name and o["kind"] == obj["kind"] for o in owners):
                        await self._delete(child_plural, namespace, child["metadata"]["name"], {})
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Success",
                "details": {"name": name, "kind": plural},
            }
        grace = float(
            query.get("gracePeriodSeconds", obj["spec"].get("terminationGracePeriodSeconds", 30))
        )
        runtime = self.kubelet.runtimes.get((namespace, name))
        if "deletionTimestamp" not in obj["metadata"]:
            obj["metadata"]["deletionTimestamp"] = now_rfc3339()
            obj["metadata"]["deletionGracePeriodSeconds"] = int(grace)
            obj = self.store.update("pods", namespace, name)
        if runtime is None:
            self.store.remove("pods", namespace, name)
        else:
            runtime.request_stop(grace)
        return obj

    async def _watch(
        self, send: Send, receive: Receive, plural: str, namespace: str, query: Mapping[str, str]
    ) -> None:
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        since = query.get("resourceVersion", "")
        timeout = float(query.get("timeoutSeconds", "1800"))
        await _start_stream(send, "application/json")

        async def produce() -> None:
            version = int(since) if since.isdigit() and since != "0" else None
            if version is None:
                for obj in self.store.list(plural, namespace, labels=labels, fields=fields):
                    await _send_chunk(send, json.dumps({"type": "ADDED", "object": obj}) + "\n")
                version = self.store.version
            while True:
                changed = self.store.changed
                for change in list(
                    self.store.changes_since(
                        version, plural, namespace, labels=labels, fields=fields
                    )
                ):
                    await _send_chunk(
                        send, json.dumps({"type": change.kind, "object": change.obj}) + "\n"
                    )
                version = self.store.version
                await changed.wait()

        with trio.move_on_after(timeout):
            await _until_disconnect(receive, produce)
        await _end_stream(send)

    async def _log(
        self, send: Send, receive: Receive, namespace: str, name: str, query: Mapping[str, str]
    ) -> None:
        self.store.get("pods", namespace, name)
        runtime = self.kubelet.runtimes.get((namespace, name))
        if runtime is None or not runtime.started:
            raise ApiStatusError(
                400,
                "BadRequest",
                f'container "sandbox" in pod "{name}" is waiting to start: ContainerCreating',
            )
        follow = query.get("follow") in ("true", "1")
        stamps = query.get("timestamps") in ("true", "1")
        since = query.get("sinceTime")
        cut_after = self.cut_log_streams.pop(0) if self.cut_log_streams else None
        await _start_stream(send, "text/plain")

        async def produce() -> None:
            sent = 0
            index = 0
            while True:
                changed = runtime.log_changed
                while index < len(runtime.log):
                    stamp, line = runtime.log[index]
                    index += 1
                    if since is not None and stamp.partition(".")[0] + "Z" < since:
                        continue
                    if cut_after is not None and sent >= cut_after:
                        return  # the fault: the stream just ends, the container runs on
                    await _send_chunk(send, (f"{stamp} {line}" if stamps else line) + "\n")
                    sent += 1
                if not follow or runtime.container_done.is_set():
                    if runtime.container_done.is_set():
                        await trio.sleep(0.05)  # the last lines of the reader
                        if index < len(runtime.log):
                            continue
                    return
                with trio.move_on_after(0.5):
                    await changed.wait()

        await _until_disconnect(receive, produce)
        await _end_stream(send)

    # ---- port-forward over WebSocket -------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "websocket.connect"
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode())
        try:
            who = self._authenticate(scope)
            route = _route(scope["path"].rstrip("/"))
            if route is None or route[4] != "portforward":
                raise ApiStatusError(
                    404,
                    "NotFound",
                    f"the server could not find the requested resource ({scope['path']})",
                )
            _group, namespace, _plural, name, _sub = route
            self._authorize(who, "create", "pods/portforward", namespace, name, "")
            self.store.get("pods", namespace, name)
            runtime = self.kubelet.runtimes.get((namespace, name))
            if runtime is None or not runtime.started or runtime.container_done.is_set():
                raise ApiStatusError(400, "BadRequest", f'pod "{name}" is not running')
            ports = [int(port) for text in query.get("ports", []) for port in text.split(",")]
            if len(ports) != 1:
                raise ApiStatusError(
                    400, "BadRequest", "this double forwards exactly one port per connection"
                )
        except ApiStatusError as error:
            body = json.dumps(error.status()).encode()
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": error.code,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
            return
        offered = scope.get("subprotocols") or []
        accept: dict[str, Any] = {"type": "websocket.accept"}
        if "v4.channel.k8s.io" in offered:
            accept["subprotocol"] = "v4.channel.k8s.io"
        await send(accept)
        port = ports[0]
        announce = port.to_bytes(2, "little")
        await send({"type": "websocket.send", "bytes": b"\x00" + announce})
        await send({"type": "websocket.send", "bytes": b"\x01" + announce})
        await self._forward(send, receive, runtime, name, port)
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1000})

    async def _forward(
        self, send: Send, receive: Receive, runtime: PodRuntime, name: str, port: int
    ) -> None:
        if self.portforward_error is not None:
            error, self.portforward_error = self.portforward_error, None
            await send({"type": "websocket.send", "bytes": b"\x01" + error.encode()})
            return
        target = runtime.ports.get(port)
        try:
            if target is None:
                raise OSError("connect: connection refused")
            stream = await trio.open_tcp_stream("127.0.0.1", target)
        except OSError as error:
            text = (
                f"error forwarding port {port} to pod {name}: failed to connect to"
                f" localhost:{port} inside namespace: {error}"
            )
            await send({"type": "websocket.send", "bytes": b"\x01" + text.encode()})
            return
        async with stream, trio.open_nursery() as nursery:

            async def to_pod() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "websocket.disconnect":
                        break
                    data = message.get("bytes") or b""
                    if data[:1] == b"\x00" and len(data) > 1:
                        with contextlib.suppress(
                            trio.BrokenResourceError, trio.ClosedResourceError
                        ):
                            await stream.send_all(data[1:])
                nursery.cancel_scope.cancel()

            async def from_pod() -> None:
                first = True
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    while data := await stream.receive_some(65536):
                        if first:
                            self.first_bytes.setdefault(name, []).append(trio.current_time())
                            first = False
                        await send({"type": "websocket.send", "bytes": b"\x00" + data})
                nursery.cancel_scope.cancel()

            nursery.start_soon(to_pod)
            nursery.start_soon(from_pod)


def _owner_reference(owner: JsonObject) -> JsonObject:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"].get("uid", ""),
        "controller": True,
    }


def _route(path: str) -> tuple[str, str, str, str, str] | None:
    """(group/version, namespace, plural, name, subresource) of a resource path."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"]:
        group, rest = "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return None
    namespace = ""
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    if not rest or (group, rest[0]) not in KINDS or len(rest) > 3:
        return None
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if sub and sub not in _SUBRESOURCES:
        return None
    return group, namespace, rest[0], name, sub


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


async def _send_json(send: Send, status: int, obj: JsonObject) -> None:
    body = json.dumps(obj).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _start_stream(send: Send, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"transfer-encoding", b"chunked"),
            ],
        }
    )


async def _send_chunk(send: Send, text: str) -> None:
    await send({"type": "http.response.body", "body": text.encode(), "more_body": True})


async def _end_stream(send: Send) -> None:
    with contextlib.suppress(Exception):
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnect(receive: Receive, produce: Callable[[], Awaitable[None]]) -> None:
    """Run ``produce`` until it returns or the client goes away."""
    async with trio.open_nursery() as nursery:

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            nursery.cancel_scope.cancel()

        async def run() -> None:
            with contextlib.suppress(Exception):
                await produce()
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch_disconnect)
        nursery.start_soon(run)


@contextlib.asynccontextmanager
async def open_kube_double(
    directory: Path,
    *,
    images: frozenset[str] = frozenset({"trio-sandbox:test"}),
    node_labels: Mapping[str, str] | None = None,
) -> AsyncIterator[KubeDouble]:
    """Serve the double on 127.0.0.1 (HTTPS); its kubeconfig is ``directory/kubeconfig``."""
    chain = CertificateChain.generate()
    context = chain.server_ssl_context()
    context.verify_mode = ssl.CERT_NONE  # clients authenticate with bearer tokens
    async with trio.open_nursery() as nursery:
        kubelet = Kubelet(
            Store(), nursery, images, dict(node_labels or {"kubernetes.io/os": "linux"}), {}
        )
        double = KubeDouble(kubelet.store, kubelet, chain)
        double.grant(ADMIN_TOKEN, "admin", None)
        bound = await nursery.start(partial_serve(double, context))
        double.url = f"https://127.0.0.1:{bound.port}"
        double.kubeconfig = double.write_kubeconfig(directory / "kubeconfig")
        try:
            yield double
        finally:
            for runtime in list(kubelet.runtimes.values()):
                runtime.request_stop(0)
            with trio.move_on_after(10):
                for runtime in list(kubelet.runtimes.values()):
                    await runtime.gone.wait()
            nursery.cancel_scope.cancel()


def partial_serve(double: KubeDouble, context: ssl.SSLContext) -> Callable[..., Awaitable[None]]:
    async def serve(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        await serve_http(
            double,
            host="127.0.0.1",
            port=0,
            ssl_context=context,
            graceful_timeout=0.5,
            task_status=task_status,
        )

    return serve
