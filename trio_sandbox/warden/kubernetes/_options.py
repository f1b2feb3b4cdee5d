"""The kubernetes back end's own settings: the ``--k8s-*`` options and the Pod's limits.

Standard library only: the warden parses its command line before it imports Trio, and the
client library is imported only once the kubernetes back end runs.

Every ``--k8s-X`` option falls back to the variable ``TRIO_SANDBOX_K8S_X`` (``-`` as ``_``), so
that a host that runs the warden unchanged (``trio-sandbox run --backend kubernetes``) can
choose the context, namespace or runtime class from its environment.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ...contract import NetworkMode
from .._errors import KubernetesRequestError
from ._arguments import KUBERNETES_APIS as KUBERNETES_APIS
from ._arguments import KubernetesApi, Tunnel

DEFAULT_DEADLINE_SECONDS = 24 * 3600
DEFAULT_START_TIMEOUT_SECONDS = 300.0
DEFAULT_API_GRACE_SECONDS = 30.0
MAX_WARM_POOL = 100
GIB = 1024**3
MIB = 1024**2

_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


@dataclass(frozen=True, slots=True)
class Toleration:
    """``--k8s-toleration KEY[=VALUE][:EFFECT]``: ``Exists`` without a value, else ``Equal``."""

    key: str
    value: str | None = None
    effect: str | None = None

    def manifest(self) -> dict[str, str]:
        entry = {"key": self.key, "operator": "Exists" if self.value is None else "Equal"}
        if self.value is not None:
            entry["value"] = self.value
        if self.effect is not None:
            entry["effect"] = self.effect
        return entry


@dataclass(frozen=True, slots=True)
class ClaimVolume:
    """A PersistentVolumeClaim mounted at ``target``: ``pvc:NAME:/work[:ro]`` or ``NAME:/work``."""

    claim: str
    target: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class KubernetesOptions:
    """Where and how the Pod runs (everything the ``--k8s-*`` options say)."""

    api: KubernetesApi = "pods"
    context: str | None = None
    namespace: str | None = None
    kubeconfig: str | None = None
    runtime_class: str | None = None
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    deadline_seconds: int = DEFAULT_DEADLINE_SECONDS
    start_timeout: float = DEFAULT_START_TIMEOUT_SECONDS
    # How long the API server may be unreachable before the warden gives the sandbox up.
    api_grace: float = DEFAULT_API_GRACE_SECONDS
    # The interpreter in the image that stands for this warden's own (the host's default command).
    python: str = "python3"
    tunnel: Tunnel = "auto"
    # agent-sandbox: claim from this SandboxWarmPool (with its SandboxTemplate) instead.
    warm_pool: str | None = None
    sandbox_template: str | None = None
    # agent-sandbox: claim from a pool of this many ready Pods the warden ensures itself (its
    # SandboxTemplate made from this sandbox's Pod); the sandbox's variables are handed over
    # through the port-forward once the claim binds (``_provision``).
    warm_pool_size: int | None = None
    claims: tuple[ClaimVolume, ...] = ()
    sweep: bool = True


@dataclass(frozen=True, slots=True)
class EgressDestination:
    """One allow-list entry: a host (an IP literal, or a name NetworkPolicy cannot express)."""

    host: str
    port: int | None = None


@dataclass(frozen=True, slots=True)
class PodSettings:
    """The limits and network of the Pod, whatever back-end options they came from.
    None: no bound (the namespace's LimitRange, if any, applies)."""

    memory_bytes: int | None = 2 * GIB
    cpus: float | None = 2.0
    tmp_size_bytes: int | None = 256 * MIB
    network: NetworkMode = NetworkMode.NONE
    allow: tuple[EgressDestination, ...] = ()


def _env_default(environ: Mapping[str, str], name: str) -> str | None:
    return environ.get("TRIO_SANDBOX_K8S_" + name.upper().replace("-", "_")) or None


def _number(text: str, option: str, *, integer: bool) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise KubernetesRequestError(f"{option} {text!r}: expected {kind} of seconds") from None
    if value <= 0:
        raise KubernetesRequestError(f"{option} {text!r}: must be positive")
    return value


def parse_node_selector(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
        raise KubernetesRequestError(
            f"--k8s-node-selector {text!r}: expected KEY=VALUE with a label key and value"
        )
    return key, value


def parse_toleration(text: str) -> Toleration:
    head, sep, effect = text.rpartition(":")
    if not sep:
        head, effect = text, ""
    key, has_value, value = head.partition("=")
    if not _LABEL_KEY.fullmatch(key) or (has_value and not _LABEL_VALUE.fullmatch(value)):
        raise KubernetesRequestError(f"--k8s-toleration {text!r}: expected KEY[=VALUE][:EFFECT]")
    if effect and effect not in _TAINT_EFFECTS:
        raise KubernetesRequestError(
            f"--k8s-toleration {text!r}: the effect must be one of {', '.join(_TAINT_EFFECTS)}"
        )
    return Toleration(key, value if has_value else None, effect or None)


def parse_claim_volume(text: str) -> ClaimVolume:
    """``pvc:NAME:/work[:ro]``, or the contract's named form ``NAME:/work[:ro]``."""
    parts = text.split(":")
    if parts[0] == "pvc":
        parts = parts[1:]
    read_only = False
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        read_only = parts[2] == "ro"
        parts = parts[:2]
    if len(parts) != 2 or not _NAME.fullmatch(parts[0]) or not parts[1].startswith("/"):
        raise KubernetesRequestError(
            f"--volume {text!r}: expected pvc:CLAIM:/PATH[:ro] with a PersistentVolumeClaim name"
        )
    target = os.path.normpath(parts[1])
    if target in ("/", "/tmp", "/proc", "/dev"):
        raise KubernetesRequestError(f"--volume {text!r}: {target} cannot be a volume in the Pod")
    return ClaimVolume(parts[0], target, read_only)


def kubernetes_options(
    args: argparse.Namespace,
    claims: tuple[ClaimVolume, ...] = (),
    environ: Mapping[str, str] | None = None,
) -> KubernetesOptions:
    """The options from parsed ``--k8s-*`` arguments, falling back to the environment."""
    env = os.environ if environ is None else environ

    def value(name: str) -> str | None:
        given: str | None = getattr(args, "k8s_" + name.replace("-", "_"))
        return given if given is not None else _env_default(env, name)

    api = value("api") or "pods"
    if api not in KUBERNETES_APIS:
        raise KubernetesRequestError(
            f"--k8s-api {api!r}: expected one of {', '.join(KUBERNETES_APIS)}"
        )
    tunnel = value("tunnel") or "auto"
    if tunnel not in ("auto", "portforward"):
        raise KubernetesRequestError(f"--k8s-tunnel {tunnel!r}: expected auto or portforward")
    # Repeatable options; their variables hold comma-separated lists.
    selectors = list(args.k8s_node_selector) or (_env_default(env, "node-selector") or "").split(
        ","
    )
    tolerations = list(args.k8s_toleration) or (_env_default(env, "toleration") or "").split(",")
    deadline, start_timeout, grace = value("deadline"), value("start-timeout"), value("api-grace")
    warm_pool, template = value("warm-pool"), value("sandbox-template")
    if (warm_pool or template) and api != "agent-sandbox":
        raise KubernetesRequestError(
            "--k8s-warm-pool and --k8s-sandbox-template need --k8s-api agent-sandbox"
        )
    pool_size = None
    if warm_pool is not None and warm_pool.isdigit():
        pool_size = int(warm_pool)
        if not 1 <= pool_size <= MAX_WARM_POOL:
            raise KubernetesRequestError(
                f"--k8s-warm-pool {warm_pool}: expected 1 to {MAX_WARM_POOL} ready Pods"
            )
        if template:
            raise KubernetesRequestError(
                "--k8s-warm-pool N makes its own SandboxTemplate: no --k8s-sandbox-template"
            )
        warm_pool = None
    elif bool(warm_pool) != bool(template):
        raise KubernetesRequestError(
            "--k8s-warm-pool and --k8s-sandbox-template go together (a claim names both)"
        )
    return KubernetesOptions(
        api="agent-sandbox" if api == "agent-sandbox" else "pods",
        context=value("context"),
        namespace=value("namespace"),
        kubeconfig=value("kubeconfig"),
        runtime_class=value("runtime-class"),
        node_selector=tuple(parse_node_selector(text) for text in selectors if text),
        tolerations=tuple(parse_toleration(text) for text in tolerations if text),
        deadline_seconds=int(_number(deadline, "--k8s-deadline", integer=True))
        if deadline
        else DEFAULT_DEADLINE_SECONDS,
        start_timeout=_number(start_timeout, "--k8s-start-timeout", integer=False)
        if start_timeout
        else DEFAULT_START_TIMEOUT_SECONDS,
        api_grace=_number(grace, "--k8s-api-grace", integer=False)
        if grace
        else DEFAULT_API_GRACE_SECONDS,
        python=value("python") or "python3",
        tunnel="portforward" if tunnel == "portforward" else "auto",
        warm_pool=warm_pool,
        sandbox_template=template,
        warm_pool_size=pool_size,
        claims=claims,
        sweep=not args.k8s_no_sweep and _env_default(env, "no-sweep") is None,
    )
