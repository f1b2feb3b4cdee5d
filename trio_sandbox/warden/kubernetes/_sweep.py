"""Leftovers: Pods (and NetworkPolicies) of sandboxes whose warden can no longer delete them.

A warden deletes its Pod on every exit it lives through; one killed with SIGKILL (or a host
that lost power) cannot. The sweep, run by every warden as it starts and by
``trio-sandbox-warden sweep``, deletes in its namespace, by the labels every sandbox carries:

- a Pod whose owner ran on this host, in this boot, and is gone (its pid is dead or now
  another process: the start time is part of the owner annotation);
- a Pod past its deadline (the kubelet should have stopped it) by a margin;
- a Pod that finished long ago, whoever owned it;
- a NetworkPolicy whose Pod has been gone for a while (the policy is made first, so a young one
  may belong to a Pod that is being created);
- with agent-sandbox: a SandboxClaim or Sandbox whose warden is gone (the same owner test:
  deleting it deletes its Pod, which its controller would otherwise make again); a warm pool
  (SandboxWarmPool) whose owner, the host that ran its wardens, is gone, then its
  SandboxTemplate and its deny-all NetworkPolicy once neither the pool nor any of its Pods is
  left.

Owners on other hosts cannot be checked from here: their Pods go by the deadline, their pools by
the pool's ``ttlSecondsAfterCreated`` (the deadline too).
"""

from __future__ import annotations

import argparse
import datetime
import sys

import attrs
import trio

from .._errors import KubernetesError, WrapRequestError
from ._api import (
    NETWORK_POLICIES,
    PODS,
    SANDBOX_CLAIMS,
    SANDBOX_TEMPLATES,
    SANDBOX_WARM_POOLS,
    SANDBOXES,
    KubeApi,
    Resource,
    open_kube_api,
)
from ._options import kubernetes_options
from ._pod import (
    ANNOTATION_OWNER,
    LABEL_MANAGED_BY,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_POOL,
    LABEL_SANDBOX,
    MANAGED_BY,
    JsonObject,
    host_label,
    process_identity,
)

DEADLINE_MARGIN_SECONDS = 300
FINISHED_KEEP_SECONDS = 600
YOUNG_POLICY_SECONDS = 300
POD_GONE_WAIT_SECONDS = 10.0
SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


@attrs.frozen
class Leftover:
    kind: str
    name: str
    reason: str


def _parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot_file:
            return boot_file.read().strip()
    except OSError:
        return None


def _finished_at(pod: JsonObject) -> datetime.datetime | None:
    latest = None
    for status in pod.get("status", {}).get("containerStatuses") or []:
        finished = _parse_time(
            ((status.get("state") or {}).get("terminated") or {}).get("finishedAt")
        )
        if finished is not None and (latest is None or finished > latest):
            latest = finished
    return latest


def leftover_reason(pod: JsonObject, now: datetime.datetime) -> str | None:
    """Why this Pod should go, or None to keep it."""
    metadata = pod.get("metadata", {})
    labels = metadata.get("labels") or {}
    owner = (metadata.get("annotations") or {}).get(ANNOTATION_OWNER, "")
    boot_id, _, pid_text = owner.partition(":")
    pid_text = pid_text.partition(":")[0]
    if (
        labels.get(LABEL_OWNER_HOST) == host_label()
        and boot_id == _boot_id()
        and pid_text.isdigit()
        and labels.get(LABEL_OWNER_PID) == pid_text
        and process_identity(int(pid_text)) != owner
    ):
        return f"its warden (pid {pid_text} on this host) is gone"
    created = _parse_time(metadata.get("creationTimestamp"))
    deadline = pod.get("spec", {}).get("activeDeadlineSeconds")
    if created is not None and isinstance(deadline, int):
        overdue = (now - created).total_seconds() - deadline
        if overdue > DEADLINE_MARGIN_SECONDS:
            return f"past its deadline by {overdue:.0f} s"
    phase = pod.get("status", {}).get("phase")
    finished = _finished_at(pod)
    if phase in ("Succeeded", "Failed") and finished is not None:
        age = (now - finished).total_seconds()
        if age > FINISHED_KEEP_SECONDS:
            return f"finished {age:.0f} s ago"
    return None


async def _wait_gone(kube: KubeApi, names: list[str]) -> set[str]:
    """Which of the deleted Pods are gone within a few seconds (their policies may go then)."""
    gone: set[str] = set()
    with trio.move_on_after(POD_GONE_WAIT_SECONDS):
        while len(gone) < len(names):
            for name in names:
                if name not in gone and await kube.get(PODS, name) is None:
                    gone.add(name)
            await trio.sleep(0.1)
    return gone


async def _list_optional(kube: KubeApi, resource: Resource) -> list[JsonObject]:
    """Ours of an agent-sandbox kind; none where agent-sandbox is not installed (or where this
    user may not list it)."""
    try:
        return await kube.list_objects(resource, label_selector=SELECTOR)
    except KubernetesError as error:
        if error.reason in ("NotFound", "Forbidden"):
            return []  # not installed, or not ours to see: nothing of it to sweep
        raise


def _young(obj: JsonObject, now: datetime.datetime) -> bool:
    created = _parse_time(obj["metadata"].get("creationTimestamp"))
    return created is not None and (now - created).total_seconds() < YOUNG_POLICY_SECONDS


async def _sweep_agent_sandbox(
    kube: KubeApi, now: datetime.datetime, found: list[Leftover], *, dry_run: bool
) -> set[str]:
    """Claims and Sandboxes of gone wardens, pools of gone hosts; the pools still live."""
    for resource, kind in ((SANDBOX_CLAIMS, "SandboxClaim"), (SANDBOXES, "Sandbox")):
        for obj in await _list_optional(kube, resource):
            reason = leftover_reason(obj, now)
            if reason is not None:
                found.append(Leftover(kind, obj["metadata"]["name"], reason))
                if not dry_run:
                    await kube.delete(resource, obj["metadata"]["name"])
    live_pools: set[str] = set()
    for pool in await _list_optional(kube, SANDBOX_WARM_POOLS):
        name = pool["metadata"]["name"]
        reason = leftover_reason(pool, now)
        if reason is None:
            live_pools.add(name)
            continue
        found.append(Leftover("SandboxWarmPool", name, reason.replace("warden", "host")))
        if not dry_run:
            await kube.delete(SANDBOX_WARM_POOLS, name)
    for template in await _list_optional(kube, SANDBOX_TEMPLATES):
        name = template["metadata"]["name"]
        if name in live_pools or _young(template, now):
            continue
        found.append(Leftover("SandboxTemplate", name, "its warm pool is gone"))
        if not dry_run:
            await kube.delete(SANDBOX_TEMPLATES, name)
    return live_pools


async def sweep(
    kube: KubeApi, *, dry_run: bool = False, agent_sandbox: bool = True
) -> list[Leftover]:
    """Delete (or with ``dry_run`` only list) the leftovers in the API's namespace; the
    agent-sandbox kinds too unless ``agent_sandbox`` is false."""
    now = datetime.datetime.now(datetime.UTC)
    found: list[Leftover] = []
    live: set[str] = set()
    deleted: list[str] = []
    live_pools = (
        await _sweep_agent_sandbox(kube, now, found, dry_run=dry_run) if agent_sandbox else set()
    )
    for pod in await kube.list_objects(PODS, label_selector=SELECTOR):
        name = pod["metadata"]["name"]
        reason = leftover_reason(pod, now)
        labels = pod["metadata"].get("labels") or {}
        if reason is None:
            # A claimed Pod has its own name: its policy is found by the sandbox label.
            live.update({name, labels.get(LABEL_SANDBOX, name)})
            if labels.get(LABEL_POOL):
                live_pools.add(labels[LABEL_POOL])
            continue
        found.append(Leftover("Pod", name, reason))
        if not dry_run:
            await kube.delete(PODS, name, grace_seconds=0)
            deleted.append(name)
    # A policy goes once its Pod is gone (never while it still runs, whose egress it holds).
    gone = await _wait_gone(kube, deleted) if deleted else set()
    for policy in await kube.list_objects(NETWORK_POLICIES, label_selector=SELECTOR):
        name = policy["metadata"]["name"]
        labels = policy["metadata"].get("labels") or {}
        young = _young(policy, now)
        if (
            name in live
            or labels.get(LABEL_SANDBOX) in live
            or (LABEL_POOL in labels and labels[LABEL_POOL] in live_pools)
            or (young and name not in gone)
            or (name in deleted and name not in gone)
        ):
            continue
        found.append(Leftover("NetworkPolicy", name, "its Pod is gone"))
        if not dry_run:
            await kube.delete(NETWORK_POLICIES, name)
    return found


async def sweep_quietly(kube: KubeApi, *, agent_sandbox: bool = False) -> None:
    """The sweep at start: a note per leftover, a note if it cannot run; never an error. The
    agent-sandbox kinds only for a warden that uses them: a refused list of a kind this user
    has no rights to would make kr8s re-authenticate under the warden's own requests."""
    try:
        leftovers = await sweep(kube, agent_sandbox=agent_sandbox)
    except KubernetesError as error:
        print(
            f"trio-sandbox-warden: note: no sweep of leftovers: {error}",
            file=sys.stderr,
            flush=True,
        )
        return
    for leftover in leftovers:
        print(
            f"trio-sandbox-warden: note: deleted leftover {leftover.kind} {leftover.name}"
            f" ({leftover.reason})",
            file=sys.stderr,
            flush=True,
        )


async def _sweep_command(args: argparse.Namespace) -> int:
    options = kubernetes_options(args)
    async with open_kube_api(
        kubeconfig=options.kubeconfig, context=options.context, namespace=options.namespace
    ) as kube:
        leftovers = await sweep(kube, dry_run=args.dry_run)
        verb = "would delete" if args.dry_run else "deleted"
        for leftover in leftovers:
            print(f"{verb} {leftover.kind} {kube.namespace}/{leftover.name}: {leftover.reason}")
        if not leftovers:
            print(f"no leftovers in namespace {kube.namespace}")
    return 0


def sweep_main(args: argparse.Namespace) -> int:
    """``trio-sandbox-warden sweep``: 0 when the sweep ran, 125 when the cluster refused it."""
    from .._spec import WARDEN_ERROR_STATUS

    try:
        return trio.run(_sweep_command, args)
    except (KubernetesError, WrapRequestError) as error:
        print(f"trio-sandbox-warden: error: {error}", file=sys.stderr, flush=True)
        return WARDEN_ERROR_STATUS
