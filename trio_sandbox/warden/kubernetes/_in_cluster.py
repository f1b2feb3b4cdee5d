"""One sandbox's whole run in the cluster: one Pod, reached only through the API server.

1. The published ports are bound first (a taken port fails at once), leftovers are swept in
   the background, the NetworkPolicy is made, then the Pod (or an agent-sandbox Sandbox, or a
   SandboxClaim on a warm pool). With ``--k8s-warm-pool N`` the pool is ensured first (its
   deny-all NetworkPolicy, SandboxTemplate, SandboxWarmPool), the claim binds to a Pod that
   already runs, and the sandbox's variables are handed to it through the port-forward.
2. The Pod is watched until its container runs; errors that will not mend (image pull,
   forbidden, quota, deadline) end the start with the reason and the Pod's events.
3. Its log is followed onto stdout (the CA block for the host), each published connection is
   a port-forward WebSocket, and the Pod's end is the warden's exit status.
4. Whatever ends the run (the command, SIGINT, an error, cancellation) the Pod is deleted, its
   end awaited for a few seconds, and only then its NetworkPolicy (so its egress never opens).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import socket
import sys

import attrs
import trio

from ...concurrency import exception_leaves, single_error
from .._errors import ApiUnreachable, KubernetesError, KubernetesRequestError
from .._limits import announce_limits
from .._ports import bind_published_port
from .._publish import serve_relays
from .._spec import WARDEN_ERROR_STATUS, WrapSpec
from .._stopping import ORDINARY_GRACE, StopGrace
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
from ._logs import LogFollower
from ._options import KubernetesOptions, PodSettings
from ._pod import (
    LABEL_SANDBOX,
    JsonObject,
    PodPlan,
    claim_manifest,
    kubernetes_limit_plan,
    network_policy_manifest,
    pod_manifest,
    pod_settings_from_wrap,
    pool_claim_manifest,
    pool_policy_manifest,
    refuse_host_volumes,
    refuse_unreachable_tunnel,
    sandbox_manifest,
    sandbox_template_manifest,
    template_key,
    warm_pod_spec,
    warm_pool_manifest,
)
from ._portforward import open_port_forwarder
from ._provision import READY_LINE
from ._status import (
    PodEnded,
    ended,
    fatal_waiting,
    follow_object,
    pod_failure,
    unschedulable_message,
)
from ._sweep import sweep_quietly

DELETE_WAIT_SECONDS = 8.0
HURRIED_DELETE_WAIT_SECONDS = 2.0
LOG_DRAIN_SECONDS = 5.0
# The warm Pod's stub answers at once; this bounds a port-forward that never answers.
PROVISION_SECONDS = 20.0


def _note(text: str) -> None:
    print(f"trio-sandbox-warden: note: {text}", file=sys.stderr, flush=True)


@attrs.define(eq=False)
class _Created:
    """What this run made, in the order it must be deleted."""

    top: tuple[Resource, str] | None = None  # the Pod, Sandbox or SandboxClaim
    policy: str | None = None
    pod: str | None = None
    # A claim on our own warm pool (its name): the Pod waits for the sandbox's variables.
    pool: str | None = None


async def _create(
    kube: KubeApi,
    plan: PodPlan,
    spec: WrapSpec,
    options: KubernetesOptions,
    settings: PodSettings,
    created: _Created,
) -> str:
    """Make the NetworkPolicy, then the workload; return the Pod's name once known."""
    policy, skipped = network_policy_manifest(plan, settings)
    for destination in {destination.host: destination for destination in skipped}.values():
        _note(
            f"allow-list entry {destination.host!r} is a name, which a NetworkPolicy cannot"
            " express: it stays blocked on a cluster (give its address instead)"
        )
    await kube.create(NETWORK_POLICIES, policy)
    created.policy = plan.name
    if options.api == "pods":
        await kube.create(PODS, pod_manifest(plan, spec, options, settings))
        created.top = (PODS, plan.name)
        return plan.name
    if options.warm_pool_size is not None:
        await _ensure_pool(kube, spec, options, settings, plan, created)
    elif options.warm_pool is None:
        await kube.create(SANDBOXES, sandbox_manifest(plan, spec, options, settings))
        created.top = (SANDBOXES, plan.name)
    else:
        await kube.create(SANDBOX_CLAIMS, claim_manifest(plan, spec, options))
        created.top = (SANDBOX_CLAIMS, plan.name)
    claim = plan.name if created.top is not None and created.top[0] == SANDBOX_CLAIMS else None
    return await _find_pod(kube, plan, options, claim)


async def _ensure(kube: KubeApi, resource: Resource, manifest: JsonObject) -> None:
    """Create, or find it made already (by another warden of the same host and template)."""
    try:
        await kube.create(resource, manifest)
    except KubernetesError as error:
        if error.reason != "AlreadyExists":
            raise


async def _ensure_pool(
    kube: KubeApi,
    spec: WrapSpec,
    options: KubernetesOptions,
    settings: PodSettings,
    plan: PodPlan,
    created: _Created,
) -> None:
    """The pool's deny-all policy, template and SandboxWarmPool (each only if missing), then
    our claim on it."""
    assert options.warm_pool_size is not None
    warm = warm_pod_spec(spec, options, settings)
    pool = PodPlan.for_pool(kube.namespace, template_key(warm))
    await _ensure(kube, NETWORK_POLICIES, pool_policy_manifest(pool))
    await _ensure(kube, SANDBOX_TEMPLATES, sandbox_template_manifest(pool, warm))
    await _ensure(
        kube, SANDBOX_WARM_POOLS, warm_pool_manifest(pool, options.warm_pool_size, options)
    )
    await kube.create(SANDBOX_CLAIMS, pool_claim_manifest(plan, pool))
    created.top = (SANDBOX_CLAIMS, plan.name)
    created.pool = pool.name


async def _wait_stub_ready(kube: KubeApi, pod: str) -> None:
    """Until the warm Pod's stub listens (its one line is in the Pod's log)."""
    async with kube.log_lines(pod, since_time=None) as lines:
        async for line in lines:
            if line.partition(" ")[2].rstrip() == READY_LINE:
                return
    # The container ended before the line: the Pod's own status says why.
    raise KubernetesError(
        "ProvisionFailed", f"Pod {pod} ended before it could take the sandbox's variables"
    )


async def _provision(kube: KubeApi, pod: str, spec: WrapSpec) -> None:
    """Hand the sandbox's variables (its client CA above all) to the claimed warm Pod, over the
    port-forward; the stub must echo our nonce, else someone else provisioned it first (or it
    is not our stub): the sandbox is refused, never shared."""
    nonce = secrets.token_hex(16)
    request = json.dumps({"env": dict(spec.env), "nonce": nonce}) + "\n"
    reply = b""
    try:
        with trio.fail_after(PROVISION_SECONDS):
            await _wait_stub_ready(kube, pod)
            async with open_port_forwarder(kube, pod) as forwarder:
                stream = await forwarder.connect(spec.ports[0].container_port)
                async with stream:
                    await stream.send_all(request.encode())
                    while b"\n" not in reply and len(reply) < 256:
                        chunk = await stream.receive_some(256)
                        if not chunk:
                            break
                        reply += chunk
    except trio.TooSlowError:
        raise KubernetesError(
            "ProvisionFailed",
            f"Pod {pod} did not take the sandbox's variables within {PROVISION_SECONDS:g} s",
        ) from None
    except (ConnectionRefusedError, trio.BrokenResourceError) as error:
        raise KubernetesError(
            "ProvisionFailed", f"could not hand the sandbox's variables to Pod {pod}: {error}"
        ) from None
    if reply.partition(b"\n")[0] != f"ok {nonce}".encode():
        raise KubernetesError(
            "ProvisionRefused",
            f"warm Pod {pod} did not accept this sandbox's variables (it was handed to another"
            " client first, or it is not a trio-sandbox warm Pod): refused, not shared",
        )


async def _claimed_pod(kube: KubeApi, claim: str) -> str | None:
    obj = await kube.get(SANDBOX_CLAIMS, claim)
    name = ((obj or {}).get("status") or {}).get("sandbox", {}).get("name")
    if isinstance(name, str) and name and await kube.get(PODS, name) is not None:
        return name
    return None


async def _find_pod(
    kube: KubeApi, plan: PodPlan, options: KubernetesOptions, claim: str | None = None
) -> str:
    """The Pod the agent-sandbox controller made (or adopted) for us, by our sandbox label,
    else (a claim) by the Sandbox its status names."""
    selector = f"{LABEL_SANDBOX}={plan.sandbox_id}"
    with trio.move_on_after(options.start_timeout):
        pause = 0.05
        while True:
            with contextlib.suppress(ApiUnreachable):
                pods = await kube.list_objects(PODS, label_selector=selector)
                if pods:
                    return str(pods[0]["metadata"]["name"])
                if claim is not None:
                    # An adopted warm Sandbox may not carry the claim's labels (agent-sandbox
                    # versions differ): the claim's status names it, and its Pod has its name.
                    bound = await _claimed_pod(kube, claim)
                    if bound is not None:
                        return bound
            await trio.sleep(pause)
            pause = min(pause * 2, 1.0)
    raise KubernetesError(
        "StartTimeout",
        f"no Pod appeared for {plan.name} within {options.start_timeout:g} s (is the"
        " agent-sandbox controller running, and does the template exist?)",
    )


async def _wait_started(kube: KubeApi, pod: str, options: KubernetesOptions) -> None:
    """Until the container runs or ended; errors for what will not mend."""
    last_note: list[str] = []

    async def decide(obj: JsonObject) -> bool | None:
        failure = pod_failure(obj) or fatal_waiting(obj)
        if failure is not None:
            raise failure
        if ended(obj) is not None or obj.get("status", {}).get("phase") == "Running":
            return True
        waiting = unschedulable_message(obj)
        if waiting is not None and last_note != [waiting]:
            last_note[:] = [waiting]
            _note(f"Pod {pod} is not scheduled yet: {waiting}")
        return None

    try:
        with trio.fail_after(options.start_timeout):
            await follow_object(kube, PODS, pod, decide, grace=options.api_grace)
    except trio.TooSlowError:
        reason = "Unschedulable" if last_note else "StartTimeout"
        raise KubernetesError(
            reason,
            f"Pod {pod} did not start within {options.start_timeout:g} s"
            + (f": {last_note[0]}" if last_note else ""),
        ) from None


async def _wait_ended(
    kube: KubeApi, pod: str, options: KubernetesOptions, done: trio.Event
) -> PodEnded:
    async def decide(obj: JsonObject) -> PodEnded | None:
        failure = pod_failure(obj)
        if failure is not None:
            raise failure
        if obj["metadata"].get("deletionTimestamp"):
            # Not by this warden: it deletes only after this wait is over.
            raise KubernetesError(
                "Deleted",
                f"Pod {pod} is being deleted by someone else (kubectl delete, an operator)",
            )
        return ended(obj)

    try:
        return await follow_object(kube, PODS, pod, decide, grace=options.api_grace)
    finally:
        done.set()


async def _run_started(
    kube: KubeApi,
    pod: str,
    spec: WrapSpec,
    options: KubernetesOptions,
    sockets: list[socket.socket],
) -> int:
    stdout = trio.lowlevel.FdStream(os.dup(sys.stdout.fileno()))
    follower = LogFollower(kube, pod, stdout)
    container_done, log_done = trio.Event(), trio.Event()

    async def follow_log() -> None:
        try:
            await follower.follow(container_done, grace=options.api_grace)
        finally:
            log_done.set()

    async with stdout, open_port_forwarder(kube, pod) as forwarder:
        with single_error():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    functools.partial(
                        serve_relays, spec.ports, sockets, forwarder.connect, host_network=False
                    )
                )
                nursery.start_soon(follow_log)
                end = await _wait_ended(kube, pod, options, container_done)
                # The log's last lines come after the container's end is known.
                with trio.move_on_after(LOG_DRAIN_SECONDS):
                    await log_done.wait()
                nursery.cancel_scope.cancel()
    if not follower.block_seen.is_set():
        tail = "\n".join(f"    {line}" for line in follower.tail) or "    (no output)"
        _note(
            f"Pod {pod} ended with status {end.exit_code} ({end.reason or 'no reason'}) before"
            f" its server CA block; its last log lines:\n{tail}"
        )
    return end.exit_code


async def _delete(kube: KubeApi, created: _Created, grace: StopGrace) -> None:
    """Delete the workload, wait (a little) for its Pod to go, then the NetworkPolicy. After
    the lifeline broke (nobody waits for a graceful end) the Pod gets no grace period, and
    the warm pool goes too: its owner, this warden's parent, is gone (its template and deny-all
    policy are left to the sweep, once the pool's Pods are gone)."""
    hurried = grace.seconds < ORDINARY_GRACE
    if created.top is not None:
        resource, name = created.top
        try:
            await kube.delete(resource, name, grace_seconds=0 if hurried else None)
            if hurried and created.pool is not None:
                await kube.delete(SANDBOX_WARM_POOLS, created.pool, grace_seconds=0)
        except KubernetesError as error:
            _note(f"could not delete {resource[1]}/{name}: {error}; the sweep or its deadline will")
            return
    if created.pod is not None:
        with trio.move_on_after(
            HURRIED_DELETE_WAIT_SECONDS if hurried else DELETE_WAIT_SECONDS
        ) as waited:
            while True:
                with contextlib.suppress(ApiUnreachable):
                    if await kube.get(PODS, created.pod) is None:
                        break
                await trio.sleep(0.1)
        if waited.cancelled_caught:
            _note(f"Pod {created.pod} is still terminating; its NetworkPolicy is left to the sweep")
            return
    if created.policy is not None:
        try:
            await kube.delete(NETWORK_POLICIES, created.policy)
        except KubernetesError as error:
            _note(f"could not delete networkpolicy/{created.policy}: {error}")


async def _run_in_cluster(
    kube: KubeApi,
    spec: WrapSpec,
    options: KubernetesOptions,
    settings: PodSettings,
    sockets: list[socket.socket],
    grace: StopGrace,
) -> int:
    plan = PodPlan.new(kube.namespace)
    created = _Created()
    async with trio.open_nursery() as background:
        if options.sweep:
            background.start_soon(
                functools.partial(sweep_quietly, kube, agent_sandbox=options.api == "agent-sandbox")
            )
        try:
            pod = await _create(kube, plan, spec, options, settings, created)
            created.pod = pod
            await _wait_started(kube, pod, options)
            if created.pool is not None:
                await _provision(kube, pod, spec)
            return await _run_started(kube, pod, spec, options, sockets)
        except KubernetesError as error:
            # The Pod's events; without a Pod, those of the claim and its pool.
            names = [created.pod] if created.pod is not None else []
            if not names and created.top is not None and created.top[0] != PODS:
                names = [created.top[1]] + ([created.pool] if created.pool else [])
            if not names or error.reason == "Unreachable":
                raise
            events: list[str] = []
            with trio.move_on_after(5):
                for name in names:
                    events += await kube.events_of(name)
            raise error.with_events(events) from None
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(DELETE_WAIT_SECONDS + 4):
                    await _delete(kube, created, grace)
            background.cancel_scope.cancel()


async def run_kubernetes(spec: WrapSpec, grace: StopGrace | None = None) -> int:
    """The wrap on a cluster; API failures are printed with their reason (status 125).
    ``grace`` is shortened when the warden's parent died (the lifeline)."""
    grace = grace or StopGrace()
    options = spec.backend_options
    if not isinstance(options, KubernetesOptions):
        options = KubernetesOptions()
    try:
        refuse_host_volumes(spec)
        refuse_unreachable_tunnel(spec, options)
        settings = pod_settings_from_wrap(spec)
        if options.warm_pool_size is not None:
            warm_pod_spec(spec, options, settings)  # refused at once without a published port
    except KubernetesRequestError as error:
        print(f"trio-sandbox-warden: error: {error}", file=sys.stderr, flush=True)
        return WARDEN_ERROR_STATUS
    announce_limits(kubernetes_limit_plan(spec.limits), spec.report)
    sockets = [bind_published_port(port) for port in spec.ports]
    failures: list[BaseException] = []
    try:
        async with open_kube_api(
            kubeconfig=options.kubeconfig, context=options.context, namespace=options.namespace
        ) as kube:
            return await _run_in_cluster(kube, spec, options, settings, sockets, grace)
    except* KubernetesError as group:
        # The watch and the log follower may give up on the same outage together: one report.
        failures = list(exception_leaves(group))
    finally:
        for sock in sockets:
            sock.close()
    print(f"trio-sandbox-warden: error: {failures[0]}", file=sys.stderr, flush=True)
    return WARDEN_ERROR_STATUS
