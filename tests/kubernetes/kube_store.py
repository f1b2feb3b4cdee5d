"""The object store of the API server double: resource versions, watches, events, admission.

What a real API server does and the back end relies on, in small: every change bumps one
resource version and is kept in a history, so a watch from any version replays what it
missed; selectors on labels and on ``metadata.name`` / ``involvedObject.name``; Status
objects with the API's reasons; the restricted Pod Security profile and a pod-count quota as
admission checks.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import trio

JsonObject = dict[str, Any]
Key = tuple[str, str, str]  # (plural, namespace, name)

# (group/version, plural) -> kind, as the paths name them.
KINDS = {
    ("v1", "pods"): "Pod",
    ("v1", "events"): "Event",
    ("v1", "persistentvolumeclaims"): "PersistentVolumeClaim",
    ("networking.k8s.io/v1", "networkpolicies"): "NetworkPolicy",
    ("agents.x-k8s.io/v1alpha1", "sandboxes"): "Sandbox",
    ("extensions.agents.x-k8s.io/v1alpha1", "sandboxclaims"): "SandboxClaim",
    ("extensions.agents.x-k8s.io/v1alpha1", "sandboxwarmpools"): "SandboxWarmPool",
    ("extensions.agents.x-k8s.io/v1alpha1", "sandboxtemplates"): "SandboxTemplate",
}
GROUP_OF_PLURAL = {plural: version for version, plural in KINDS}


def now_rfc3339(precise: bool = False) -> str:
    moment = datetime.datetime.now(datetime.UTC)
    if precise:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiStatusError(Exception):
    """Answered as a ``Status`` object with this HTTP code and reason."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def status(self) -> JsonObject:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def selector_matches(selector: str, values: Mapping[str, str]) -> bool:
    """``k=v,k2==v2,k3!=v3,k4,!k5`` (equality and existence: what the clients here send)."""
    for term in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if values.get(key) == value:
                return False
        elif "=" not in term:  # existence: KEY, or !KEY for absence
            if (term.lstrip("!") in values) == term.startswith("!"):
                return False
        else:
            key, value = term.replace("==", "=").split("=", 1)
            if values.get(key) != value:
                return False
    return True


def field_values(obj: JsonObject) -> dict[str, str]:
    metadata = obj.get("metadata", {})
    values = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
    }
    involved = obj.get("involvedObject")
    if involved:
        values["involvedObject.name"] = involved.get("name", "")
        values["involvedObject.kind"] = involved.get("kind", "")
    phase = obj.get("status", {}).get("phase")
    if phase:
        values["status.phase"] = phase
    return values


@attrs.frozen
class Change:
    version: int
    kind: str  # ADDED, MODIFIED, DELETED
    key: Key
    obj: JsonObject
    # When (trio.current_time()): for the benchmark's phases of a start.
    at: float = attrs.field(factory=trio.current_time)


@attrs.define(eq=False)
class Store:
    objects: dict[Key, JsonObject] = attrs.field(factory=dict)
    history: list[Change] = attrs.field(factory=list)
    version: int = 0
    changed: trio.Event = attrs.field(factory=trio.Event)
    _event_serial: int = 0

    def _record(self, kind: str, key: Key, obj: JsonObject) -> JsonObject:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        stored = _copy(obj)
        self.history.append(Change(self.version, kind, key, stored))
        self.changed.set()
        self.changed = trio.Event()
        return _copy(stored)

    def add(self, plural: str, namespace: str, obj: JsonObject) -> JsonObject:
        metadata = obj.setdefault("metadata", {})
        name = metadata.get("name")
        if not name:
            raise ApiStatusError(422, "Invalid", f"{plural}: metadata.name: Required value")
        key = (plural, namespace, name)
        if key in self.objects:
            raise ApiStatusError(409, "AlreadyExists", f'{plural} "{name}" already exists')
        metadata["namespace"] = namespace
        metadata.setdefault("uid", f"uid-{self.version + 1:08d}")
        metadata["creationTimestamp"] = now_rfc3339()
        kind_key = (GROUP_OF_PLURAL[plural], plural)
        obj.setdefault("apiVersion", kind_key[0])
        obj.setdefault("kind", KINDS[kind_key])
        self.objects[key] = obj
        return self._record("ADDED", key, obj)

    def get(self, plural: str, namespace: str, name: str) -> JsonObject:
        obj = self.objects.get((plural, namespace, name))
        if obj is None:
            raise ApiStatusError(404, "NotFound", f'{plural} "{name}" not found')
        return obj

    def update(self, plural: str, namespace: str, name: str) -> JsonObject:
        """Record a change made in place to the stored object."""
        key = (plural, namespace, name)
        return self._record("MODIFIED", key, self.objects[key])

    def remove(self, plural: str, namespace: str, name: str) -> None:
        key = (plural, namespace, name)
        obj = self.objects.pop(key, None)
        if obj is not None:
            self._record("DELETED", key, obj)

    def list(
        self, plural: str, namespace: str, *, labels: str = "", fields: str = ""
    ) -> list[JsonObject]:
        found = []
        for (kind, ns, _name), obj in self.objects.items():
            if kind != plural or (namespace and ns != namespace):
                continue
            if labels and not selector_matches(labels, obj["metadata"].get("labels") or {}):
                continue
            if fields and not selector_matches(fields, field_values(obj)):
                continue
            found.append(_copy(obj))
        return found

    def changes_since(
        self, version: int, plural: str, namespace: str, *, labels: str = "", fields: str = ""
    ) -> Iterator[Change]:
        for change in self.history:
            if change.version <= version or change.key[0] != plural:
                continue
            if namespace and change.key[1] != namespace:
                continue
            if labels and not selector_matches(labels, change.obj["metadata"].get("labels") or {}):
                continue
            if fields and not selector_matches(fields, field_values(change.obj)):
                continue
            yield change

    def event(
        self, namespace: str, involved: JsonObject, kind: str, reason: str, message: str
    ) -> None:
        """An Event about ``involved`` (a Pod), as the kubelet and scheduler record them."""
        self._event_serial += 1
        stamp = now_rfc3339()
        name = involved["metadata"]["name"]
        self.add(
            "events",
            namespace,
            {
                "metadata": {"name": f"{name}.{self._event_serial:x}"},
                "involvedObject": {
                    "kind": involved.get("kind", "Pod"),
                    "name": name,
                    "namespace": namespace,
                    "uid": involved["metadata"].get("uid", ""),
                },
                "type": kind,
                "reason": reason,
                "message": message,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "source": {"component": "kube-double"},
            },
        )


def _copy(obj: JsonObject) -> JsonObject:
    return copy.deepcopy(obj)


def restricted_violations(spec: JsonObject) -> list[str]:
    """What the restricted Pod Security profile (latest) refuses in a Pod spec."""
    problems = []
    pod_context = spec.get("securityContext") or {}
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        problems.append("host namespaces (hostNetwork, hostPID, hostIPC must be false)")
    for volume in spec.get("volumes") or []:
        allowed = {"name", "emptyDir", "persistentVolumeClaim", "configMap", "secret", "projected"}
        if set(volume) - allowed:
            problems.append(f'restricted volume types (volume "{volume.get("name")}")')
    for container in spec.get("containers") or []:
        name = container.get("name")
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            problems.append(f'privileged (container "{name}" must not set privileged=true)')
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f'allowPrivilegeEscalation != false (container "{name}")')
        if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
            problems.append(f'unrestricted capabilities (container "{name}" must drop ALL)')
        added = (context.get("capabilities") or {}).get("add") or []
        if set(added) - {"NET_BIND_SERVICE"}:
            problems.append(f'unrestricted capabilities (container "{name}" adds {added})')
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if non_root is not True:
            problems.append(f'runAsNonRoot != true (container "{name}")')
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            problems.append(f'runAsUser=0 (container "{name}")')
        seccomp = context.get("seccompProfile") or pod_context.get("seccompProfile") or {}
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(
                f'seccompProfile (container "{name}" must be RuntimeDefault or Localhost)'
            )
    return problems
