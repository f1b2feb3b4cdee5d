"""The manifests of the kubernetes back end: the Pod, its NetworkPolicy, agent-sandbox objects.

Pure functions of the wrap request (standard library only), so that what the cluster is asked
for can be checked without one. The Pod is the restricted Pod Security profile and more: no
service account token, no service links, non-root, no privilege escalation, no capabilities,
RuntimeDefault seccomp, a read-only root file system with a bounded in-memory /tmp, limits equal
to requests, and a deadline after which the kubelet kills it whatever happened to the warden.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import os
import re
import secrets
import socket
import sys
from collections.abc import Sequence
from typing import Any

import attrs

from ...contract import LIMITS_VARIABLE, ResourceLimits
from ...egress import DEFAULT_PORTS, Refused, RuleKind
from .._errors import KubernetesRequestError
from .._limits import Enforcement, LimitPlan, limits_for_tools
from .._spec import WrapSpec
from ._options import ClaimVolume, EgressDestination, KubernetesOptions, PodSettings

JsonObject = dict[str, Any]

CONTAINER_NAME = "sandbox"
MANAGED_BY = "trio-sandbox"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_SANDBOX = "trio-sandbox.io/sandbox"
LABEL_OWNER_HOST = "trio-sandbox.io/owner-host"
LABEL_OWNER_PID = "trio-sandbox.io/owner-pid"
# The warm pool a Pod was started for (its SandboxTemplate, SandboxWarmPool and NetworkPolicy
# share the pool's name).
LABEL_POOL = "trio-sandbox.io/pool"
# boot id, pid and start time of the owning warden: tells a live owner from a reused pid.
ANNOTATION_OWNER = "trio-sandbox.io/owner"
ANNOTATION_OWNER_HOST = "trio-sandbox.io/owner-hostname"
NOBODY = 65534
TERMINATION_GRACE_SECONDS = 5
SANDBOX_API = "agents.x-k8s.io/v1alpha1"
CLAIM_API = "extensions.agents.x-k8s.io/v1alpha1"
PROVISION_MODULE = "trio_sandbox.warden.kubernetes._provision"
# Runtime classes whose sandbox keeps its own network stack, which the kubelet's port-forward
# (it enters the Pod's network namespace) cannot reach.
_GVISOR_HINTS = ("gvisor", "runsc")
_LABEL_VALUE_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def pod_settings_from_wrap(spec: WrapSpec) -> PodSettings:
    """The Pod's limits and network from the wrap request: the warden's limits as they are
    (``--memory``, ``--cpus``, ``--tmp-size``; their defaults too). ``pids`` has no Pod field
    (the node's podPidsLimit applies). Network ``host`` means no egress rule on a cluster (a Pod
    never gets the node's network); the egress allow-list, when WrapSpec has one, goes into
    ``allow``."""
    limits = spec.limits
    return PodSettings(
        memory_bytes=limits.memory,
        cpus=limits.cpus,
        tmp_size_bytes=limits.tmp_size,
        network=spec.network,
        allow=egress_destinations(spec),
    )


def egress_destinations(spec: WrapSpec) -> tuple[EgressDestination, ...]:
    """The allow-list as NetworkPolicy destinations: each allowed entry with its port (80 and
    443 without one), less what the deny list refuses. Names stay names here: the policy cannot
    express them, and the caller says so."""
    policy = spec.egress
    if policy is None:
        return ()
    found: list[EgressDestination] = []
    for rule in policy.allow:
        host = str(rule.host) if rule.kind is not RuleKind.WILDCARD else f"*.{rule.host}"
        for port in (rule.port,) if rule.port is not None else sorted(DEFAULT_PORTS):
            if rule.kind is RuleKind.ADDRESS and isinstance(policy.decide(host, port), Refused):
                continue  # denied: no rule for it
            found.append(EgressDestination(host, port))
    return tuple(found)


def kubernetes_limit_plan(limits: ResourceLimits) -> LimitPlan:
    """Who enforces each limit on a cluster: the kubelet, with the Pod's cgroup on the node."""
    by = "kubernetes (the Pod's resources.limits)"
    return LimitPlan(
        limits,
        Enforcement(
            by if limits.memory is not None else None,
            "the node's podPidsLimit (no Pod field)" if limits.pids is not None else None,
            by if limits.cpus is not None else None,
            "emptyDir sizeLimit (evicted past it)" if limits.tmp_size is not None else None,
        ),
    )


def host_label() -> str:
    """This host's name as a label value (at most 63 characters of [A-Za-z0-9_.-])."""
    value = _LABEL_VALUE_UNSAFE.sub("-", socket.gethostname())[:63].strip("-_.")
    return value or "unknown-host"


def process_identity(pid: int) -> str | None:
    """``BOOT_ID:PID:STARTTIME`` of a live process, None when there is none with that pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            fields = stat_file.read().rpartition(b")")[2].split()
        with open("/proc/sys/kernel/random/boot_id") as boot_file:
            boot_id = boot_file.read().strip()
    except OSError:
        return None
    # Field 22 of /proc/PID/stat (the 20th after the command name): start time in ticks.
    return f"{boot_id}:{pid}:{int(fields[19])}"


@attrs.frozen
class PodPlan:
    """The names and labels of one sandbox's objects."""

    name: str
    namespace: str
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]

    @classmethod
    def new(cls, namespace: str, *, owner_pid: int | None = None) -> PodPlan:
        sandbox_id = secrets.token_hex(6)
        pid = os.getpid() if owner_pid is None else owner_pid
        labels = (
            (LABEL_MANAGED_BY, MANAGED_BY),
            (LABEL_SANDBOX, sandbox_id),
            (LABEL_OWNER_HOST, host_label()),
            (LABEL_OWNER_PID, str(pid)),
        )
        annotations = (
            (ANNOTATION_OWNER, process_identity(pid) or f"unknown:{pid}:0"),
            (ANNOTATION_OWNER_HOST, socket.gethostname()),
        )
        return cls(f"trio-sandbox-{sandbox_id}", namespace, labels, annotations)

    @classmethod
    def for_pool(cls, namespace: str, key: str, *, owner_pid: int | None = None) -> PodPlan:
        """A warm pool's names and labels. Its owner is the warden's parent (the host that
        keeps starting wardens), so the sweep deletes the pool once that host is gone; ``key``
        (the template's digest) is in the name: one pool per host and Pod template."""
        pid = os.getppid() if owner_pid is None else owner_pid
        identity = process_identity(pid) or f"unknown:{pid}:0"
        digest = hashlib.sha256(f"{identity}\n{key}".encode()).hexdigest()[:12]
        name = f"trio-sandbox-pool-{digest}"
        labels = (
            (LABEL_MANAGED_BY, MANAGED_BY),
            (LABEL_POOL, name),
            (LABEL_OWNER_HOST, host_label()),
            (LABEL_OWNER_PID, str(pid)),
        )
        annotations = ((ANNOTATION_OWNER, identity), (ANNOTATION_OWNER_HOST, socket.gethostname()))
        return cls(name, namespace, labels, annotations)

    @property
    def sandbox_id(self) -> str:
        return dict(self.labels)[LABEL_SANDBOX]

    def metadata(self) -> JsonObject:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
        }


def refuse_host_volumes(spec: WrapSpec) -> None:
    """A host directory means nothing on a remote node."""
    for volume in spec.volumes:
        if not volume.named:
            raise KubernetesRequestError(
                f"--volume {volume.source}:{volume.target}: a host directory cannot be mounted"
                " into a Pod on a cluster node; use a PersistentVolumeClaim instead:"
                f" --volume pvc:CLAIM:{volume.target}[:ro] (or CLAIM:{volume.target})"
            )


def is_gvisor(runtime_class: str | None) -> bool:
    return runtime_class is not None and any(h in runtime_class.lower() for h in _GVISOR_HINTS)


def refuse_unreachable_tunnel(spec: WrapSpec, options: KubernetesOptions) -> None:
    if spec.ports and options.tunnel == "auto" and is_gvisor(options.runtime_class):
        raise KubernetesRequestError(
            f"runtime class {options.runtime_class!r} looks like gVisor, where the API server's"
            " port-forward cannot reach the Pod (gVisor keeps its own network stack), so the"
            " published port would never connect; use another runtime class (e.g. kata), or"
            " --k8s-tunnel portforward if this cluster's gVisor is known to support it"
        )


def pod_command(command: Sequence[str], options: KubernetesOptions) -> list[str]:
    """The host's default command names this warden's interpreter, which the image does not
    have: it runs as the image's ``--k8s-python`` instead."""
    own = {sys.executable, os.path.realpath(sys.executable)}
    own.add(getattr(sys, "_base_executable", sys.executable))
    argv = list(command)
    if argv and (argv[0] in own or os.path.realpath(argv[0]) in own):
        argv[0] = options.python
    return argv


def _cpu_quantity(cpus: float) -> str:
    return f"{max(1, round(cpus * 1000))}m"


def _sandbox_user(spec: WrapSpec) -> tuple[int, int]:
    uid, gid = spec.user if spec.user is not None else (NOBODY, NOBODY)
    if uid == 0:
        raise KubernetesRequestError("--user 0: the kubernetes back end runs the Pod as non-root")
    return uid, gid


def pod_spec(spec: WrapSpec, options: KubernetesOptions, settings: PodSettings) -> JsonObject:
    """The Pod's ``spec`` (also the pod template of an agent-sandbox Sandbox)."""
    uid, gid = _sandbox_user(spec)
    resources: dict[str, str] = {}
    if settings.memory_bytes is not None:
        resources["memory"] = str(settings.memory_bytes)
    if settings.cpus is not None:
        resources["cpu"] = _cpu_quantity(settings.cpus)
    # In memory, like the other back ends' tmpfs: it counts toward the memory limit.
    tmp: JsonObject = {"medium": "Memory"}
    if settings.tmp_size_bytes is not None:
        tmp["sizeLimit"] = str(settings.tmp_size_bytes)
    mounts: list[JsonObject] = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[JsonObject] = [{"name": "tmp", "emptyDir": tmp}]
    claims = list(options.claims)
    claims += [
        ClaimVolume(volume.source, volume.target, volume.read_only)
        for volume in spec.volumes
        if volume.named
    ]
    for index, claim in enumerate(claims):
        volumes.append(
            {
                "name": f"claim-{index}",
                "persistentVolumeClaim": {"claimName": claim.claim, "readOnly": claim.read_only},
            }
        )
        mounts.append(
            {"name": f"claim-{index}", "mountPath": claim.target, "readOnly": claim.read_only}
        )
    container: JsonObject = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "command": pod_command(spec.command, options),
        "env": [
            {"name": key, "value": value}
            for key, value in (
                *spec.env,
                (LIMITS_VARIABLE, limits_for_tools(kubernetes_limit_plan(spec.limits), None)),
            )
        ],
        "ports": [{"containerPort": port.container_port, "protocol": "TCP"} for port in spec.ports],
        "resources": {"limits": resources, "requests": dict(resources)},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": gid,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
        "stdin": False,
        "tty": False,
    }
    if spec.workdir:
        container["workingDir"] = spec.workdir
    pod: JsonObject = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "activeDeadlineSeconds": options.deadline_seconds,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": gid,
            "fsGroup": gid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if options.runtime_class:
        pod["runtimeClassName"] = options.runtime_class
    if options.node_selector:
        pod["nodeSelector"] = dict(options.node_selector)
    if options.tolerations:
        pod["tolerations"] = [toleration.manifest() for toleration in options.tolerations]
    return pod


def pod_manifest(
    plan: PodPlan, spec: WrapSpec, options: KubernetesOptions, settings: PodSettings
) -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": plan.metadata(),
        "spec": pod_spec(spec, options, settings),
    }


def _egress_rules(settings: PodSettings) -> tuple[list[JsonObject], list[EgressDestination]]:
    """NetworkPolicy rules for literal addresses; names cannot be expressed (returned apart)."""
    rules: list[JsonObject] = []
    names: list[EgressDestination] = []
    for destination in settings.allow:
        try:
            address = ipaddress.ip_address(destination.host.strip("[]"))
        except ValueError:
            names.append(destination)
            continue
        prefix = 32 if address.version == 4 else 128
        rule: JsonObject = {"to": [{"ipBlock": {"cidr": f"{address}/{prefix}"}}]}
        if destination.port is not None:
            rule["ports"] = [{"protocol": "TCP", "port": destination.port}]
        rules.append(rule)
    return rules, names


def network_policy_manifest(
    plan: PodPlan, settings: PodSettings
) -> tuple[JsonObject, list[EgressDestination]]:
    """Ingress denied (the host reaches the Pod through the API server, never the Pod network);
    egress denied for ``none``, literal allow-list entries for ``allow``, open for ``host``.
    Returns the policy and the allow-list names it could not express."""
    policy_types = ["Ingress"]
    spec: JsonObject = {
        "podSelector": {"matchLabels": {LABEL_SANDBOX: plan.sandbox_id}},
        "ingress": [],
    }
    skipped: list[EgressDestination] = []
    if settings.network != "host":
        policy_types.append("Egress")
        rules, skipped = _egress_rules(settings) if settings.network == "allow" else ([], [])
        spec["egress"] = rules
    spec["policyTypes"] = policy_types
    manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": plan.metadata(),
        "spec": spec,
    }
    return manifest, skipped


def sandbox_manifest(
    plan: PodPlan, spec: WrapSpec, options: KubernetesOptions, settings: PodSettings
) -> JsonObject:
    """An agent-sandbox Sandbox whose pod template is exactly the Pod above."""
    return {
        "apiVersion": SANDBOX_API,
        "kind": "Sandbox",
        "metadata": plan.metadata(),
        "spec": {
            "podTemplate": {
                "metadata": {"labels": dict(plan.labels), "annotations": dict(plan.annotations)},
                "spec": pod_spec(spec, options, settings),
            },
        },
    }


def claim_manifest(plan: PodPlan, spec: WrapSpec, options: KubernetesOptions) -> JsonObject:
    """A SandboxClaim on a named SandboxWarmPool. The contract's variables (the client CA
    above all) travel in the claim's ``env``: the template must allow their injection."""
    return {
        "apiVersion": CLAIM_API,
        "kind": "SandboxClaim",
        "metadata": plan.metadata(),
        "spec": {
            "sandboxTemplateRef": {"name": options.sandbox_template},
            "warmpool": options.warm_pool,
            "additionalPodMetadata": {"labels": dict(plan.labels)},
            "env": [{"name": key, "value": value} for key, value in spec.env],
        },
    }


def warm_pod_spec(spec: WrapSpec, options: KubernetesOptions, settings: PodSettings) -> JsonObject:
    """The Pod of a warm pool: this sandbox's Pod without its variables (they belong to one
    sandbox and are handed over once a claim binds), its command behind ``_provision``."""
    if not spec.ports:
        raise KubernetesRequestError(
            "--k8s-warm-pool N needs a published port: the sandbox's variables (its client CA)"
            " are handed to the warm Pod through it"
        )
    pod = pod_spec(dataclasses.replace(spec, env=()), options, settings)
    container = pod["containers"][0]
    container["command"] = [
        options.python,
        "-m",
        PROVISION_MODULE,
        "--port",
        str(spec.ports[0].container_port),
        "--",
        *container["command"],
    ]
    return pod


def template_key(pod: JsonObject) -> str:
    """A digest of the warm Pod: wardens that would make the same Pod share a pool."""
    return hashlib.sha256(json.dumps(pod, sort_keys=True).encode()).hexdigest()


def _pool_pod_labels(pool: PodPlan) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_POOL: pool.name}


def sandbox_template_manifest(pool: PodPlan, pod: JsonObject) -> JsonObject:
    """The SandboxTemplate of a warm pool. Its shared NetworkPolicy denies everything (empty
    rules: agent-sandbox's default policy would open egress to the internet); each sandbox's
    own policy adds what it allows once it is claimed. No env may be injected by claims (a
    claim with env is started cold)."""
    return {
        "apiVersion": CLAIM_API,
        "kind": "SandboxTemplate",
        "metadata": pool.metadata(),
        "spec": {
            "podTemplate": {"metadata": {"labels": _pool_pod_labels(pool)}, "spec": pod},
            "networkPolicyManagement": "Managed",
            "networkPolicy": {"ingress": [], "egress": []},
            "envVarsInjectionPolicy": "Disallowed",
        },
    }


def warm_pool_manifest(pool: PodPlan, replicas: int, options: KubernetesOptions) -> JsonObject:
    """N ready Sandboxes of the pool's template; the controller deletes the pool after the
    sandbox deadline whatever happens to its owner."""
    return {
        "apiVersion": CLAIM_API,
        "kind": "SandboxWarmPool",
        "metadata": pool.metadata(),
        "spec": {
            "replicas": replicas,
            "sandboxTemplateRef": {"name": pool.name},
            "ttlSecondsAfterCreated": options.deadline_seconds,
        },
    }


def pool_policy_manifest(pool: PodPlan) -> JsonObject:
    """Our own deny-all policy over the pool's Pods (whether or not agent-sandbox manages one):
    a warm Pod has no egress and no ingress until a claim's own policy selects it."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": pool.metadata(),
        "spec": {
            "podSelector": {"matchLabels": {LABEL_POOL: pool.name}},
            "ingress": [],
            "egress": [],
            "policyTypes": ["Ingress", "Egress"],
        },
    }


def pool_claim_manifest(plan: PodPlan, pool: PodPlan) -> JsonObject:
    """A SandboxClaim on our own pool: no env (the variables go through the port-forward), our
    labels and owner on the Pod it binds to."""
    return {
        "apiVersion": CLAIM_API,
        "kind": "SandboxClaim",
        "metadata": plan.metadata(),
        "spec": {
            "sandboxTemplateRef": {"name": pool.name},
            "warmpool": pool.name,
            "additionalPodMetadata": {
                "labels": {**dict(plan.labels), LABEL_POOL: pool.name},
                "annotations": dict(plan.annotations),
            },
        },
    }
