"""``--k8s-warm-pool N`` (agent-sandbox): the warden ensures a SandboxWarmPool of its own Pod
template and claims from it; the warm Pod takes the sandbox's variables through the
port-forward (``_provision``), once.

End to end against the double (its Pods are bubblewrap sandboxes with the real tool server),
with the official ``kubernetes`` client reading what the double serves; the manifests and the
stub are also checked on their own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from functools import partial
from typing import Any, cast

import pytest
import trio

from tests.kubernetes.kube_agent_sandbox import validate
from tests.kubernetes.kube_double import KubeDouble
from tests.kubernetes.kube_harness import (
    HANG_GUARD_SECONDS,
    IMAGE,
    TOOL_SERVER,
    contract_env,
    free_port,
    official_client,
    run_warden,
    start_warden,
    wait_until,
    warden_env,
    wrap_argv,
)
from tests.kubernetes.kube_store import ApiStatusError
from trio_sandbox.contract import CLIENT_CA_VARIABLE, MCP_PORT_VARIABLE, SKIP_WARDEN_VARIABLE
from trio_sandbox.sandbox import SandboxConfig, open_sandbox
from trio_sandbox.tls import MtlsIdentity
from trio_sandbox.warden import parse_wrap_args
from trio_sandbox.warden._errors import KubernetesRequestError
from trio_sandbox.warden.kubernetes._options import KubernetesOptions, PodSettings
from trio_sandbox.warden.kubernetes._pod import (
    LABEL_POOL,
    LABEL_SANDBOX,
    PROVISION_MODULE,
    PodPlan,
    pool_claim_manifest,
    pool_policy_manifest,
    process_identity,
    sandbox_template_manifest,
    template_key,
    warm_pod_spec,
    warm_pool_manifest,
)
from trio_sandbox.warden.kubernetes._provision import READY_LINE, parse_request, preload

GROUP, VERSION = "extensions.agents.x-k8s.io", "v1alpha1"
needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="the double runs Pods in bubblewrap"
)
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the double's Pods run as uid 65534 (needs root)"
)


@pytest.fixture
def pool_env(cluster_env: KubeDouble, monkeypatch: pytest.MonkeyPatch) -> KubeDouble:
    monkeypatch.setenv("TRIO_SANDBOX_K8S_API", "agent-sandbox")
    monkeypatch.setenv("TRIO_SANDBOX_K8S_WARM_POOL", "2")
    return cluster_env


def _text(result: Any) -> str:
    return "".join(getattr(item, "text", "") for item in result.content)


def _members(double: KubeDouble, pool: str) -> list[str]:
    """The pool's own (unclaimed) Sandboxes."""
    return sorted(
        sandbox["metadata"]["name"]
        for sandbox in double.objects("sandboxes")
        if any(
            ref["kind"] == "SandboxWarmPool" and ref["name"] == pool
            for ref in sandbox["metadata"].get("ownerReferences") or []
        )
    )


def _running(double: KubeDouble, names: list[str]) -> bool:
    phases = {pod["metadata"]["name"]: pod.get("status", {}).get("phase") for pod in double.pods()}
    return all(phases.get(name) == "Running" for name in names)


def _the_pool(double: KubeDouble) -> str:
    (pool,) = double.objects("sandboxwarmpools")
    return str(pool["metadata"]["name"])


# ---- end to end ------------------------------------------------------------------------------


@needs_bwrap
@needs_root
async def test_claims_bind_to_running_pods_and_the_pool_refills(pool_env: KubeDouble) -> None:
    """The first sandbox makes the pool (its template, deny-all policy) and claims from it;
    the pool refills; the next sandbox binds to a Pod that ran before its claim; a claimed Pod
    is never handed out again: its claim, Sandbox and Pod go with its warden."""
    double = pool_env
    config = SandboxConfig(backend="kubernetes", image=IMAGE)
    async with open_sandbox(config) as sandbox:
        result = await sandbox.call_tool("run_command", {"command": "echo first"})
        assert _text(result).startswith("first")
        pool = _the_pool(double)
        (claim,) = double.objects("sandboxclaims")
        assert claim["spec"]["warmpool"] == pool
        assert "env" not in claim["spec"]  # the variables went through the port-forward
        first_pod = claim["status"]["sandbox"]["name"]
    await wait_until(
        double,
        lambda: (
            double.objects("sandboxclaims") == []
            and first_pod not in {pod["metadata"]["name"] for pod in double.pods()}
        ),
        what="the first claim, its Sandbox and its Pod are gone",
    )
    await wait_until(
        double,
        lambda: len(_members(double, pool)) == 2 and _running(double, _members(double, pool)),
        what="the pool is full of running Pods again",
    )
    warm = _members(double, pool)
    async with open_sandbox(config) as sandbox:
        result = await sandbox.call_tool("run_command", {"command": "echo second"})
        assert _text(result).startswith("second")
        (claim,) = double.objects("sandboxclaims")
        bound = claim["status"]["sandbox"]["name"]
        assert bound in warm  # a Pod that ran before the claim
        assert bound != first_pod
        (pod,) = [p for p in double.pods() if p["metadata"]["name"] == bound]
        assert pod["metadata"]["labels"][LABEL_POOL] == pool
        assert pod["metadata"]["labels"][LABEL_SANDBOX] == claim["metadata"]["name"].removeprefix(
            "trio-sandbox-"
        )
        # Refilled at once: the claimed one left the pool, a new one starts.
        assert bound not in _members(double, pool)
        assert len(_members(double, pool)) == 2

        def read(api_client: Any) -> tuple[Any, Any]:
            import kubernetes

            custom = kubernetes.client.CustomObjectsApi(api_client)
            pools = custom.list_namespaced_custom_object(
                GROUP, VERSION, "default", "sandboxwarmpools"
            )
            template = custom.get_namespaced_custom_object(
                GROUP, VERSION, "default", "sandboxtemplates", pool
            )
            return pools, template

        pools, template = await official_client(double, read)
        (served,) = pools["items"]
        assert served["spec"]["replicas"] == 2
        assert served["status"]["replicas"] == 2
        assert template["spec"]["envVarsInjectionPolicy"] == "Disallowed"
    await wait_until(
        double,
        lambda: (
            bound not in {pod["metadata"]["name"] for pod in double.pods()}
            and bound not in {s["metadata"]["name"] for s in double.objects("sandboxes")}
        ),
        what="the claimed Sandbox and Pod are gone, not returned to the pool",
    )
    assert double.objects("sandboxclaims") == []
    # The pool outlives its wardens (its owner, this host process, is alive), with its policy.
    assert _the_pool(double) == pool
    assert [p["metadata"]["name"] for p in double.objects("networkpolicies")] == [pool]


def _pool_options() -> list[str]:
    return ["-p", f"127.0.0.1:{free_port()}:8080"]


async def _pool_warden(
    double: KubeDouble, identity: MtlsIdentity, *, image: str = IMAGE, **env: str
) -> subprocess.CompletedProcess[bytes]:
    return await run_warden(
        double,
        *_pool_options(),
        *contract_env(identity),
        command=TOOL_SERVER,
        image=image,
        TRIO_SANDBOX_K8S_API="agent-sandbox",
        TRIO_SANDBOX_K8S_WARM_POOL="1",
        **env,
    )


@needs_bwrap
@needs_root
async def test_a_warm_pod_handed_to_someone_else_first_is_refused(double: KubeDouble) -> None:
    """Someone with port-forward rights gives a warm Pod their own client CA before a warden
    claims it: the warden gets no answer to its nonce, refuses the sandbox (never shares it),
    and its claim and that Pod go."""
    identity = MtlsIdentity.generate_client()
    # A first warden makes the pool and holds one Pod; the pool starts a warm one of the same
    # template for the next warden.
    async with start_warden(
        double,
        *_pool_options(),
        *contract_env(identity),
        command=TOOL_SERVER,
        TRIO_SANDBOX_K8S_API="agent-sandbox",
        TRIO_SANDBOX_K8S_WARM_POOL="1",
    ) as first:
        await first.ca_block()
        pool = _the_pool(double)
        await wait_until(
            double,
            lambda: len(_members(double, pool)) == 1 and _running(double, _members(double, pool)),
            what="one warm Pod runs",
        )
        (warm,) = _members(double, pool)
        runtime = double.runtime(warm)
        assert runtime is not None
        with trio.fail_after(HANG_GUARD_SECONDS):
            while READY_LINE not in [line for _, line in runtime.log]:
                await runtime.log_changed.wait()
        attacker = MtlsIdentity.generate_client()
        env = {
            CLIENT_CA_VARIABLE: attacker.ca_cert_pem(),
            MCP_PORT_VARIABLE: "8080",
            SKIP_WARDEN_VARIABLE: "1",
        }
        with trio.fail_after(HANG_GUARD_SECONDS):
            stream = await trio.open_tcp_stream("127.0.0.1", runtime.ports[8080])
            async with stream:
                await stream.send_all(
                    json.dumps({"env": env, "nonce": "attacker"}).encode() + b"\n"
                )
                reply = b""
                while chunk := await stream.receive_some(256):
                    reply += chunk
        assert reply == b"ok attacker\n"
        result = await _pool_warden(double, identity)
        assert result.returncode == 125
        assert b"ProvisionRefused" in result.stderr, result.stderr.decode()
        assert b"refused, not shared" in result.stderr
        assert b"-----BEGIN CERTIFICATE-----" not in result.stdout  # no CA block for the host
        await wait_until(
            double,
            lambda: (
                len(double.objects("sandboxclaims")) == 1
                and warm not in {pod["metadata"]["name"] for pod in double.pods()}
            ),
            what="the refused claim and the Pod it bound are gone",
        )


@needs_bwrap
@needs_root
async def test_a_pool_the_cluster_refuses_is_a_clear_error_within_the_deadline(
    double: KubeDouble,
) -> None:
    """A quota of no Pods: the pool cannot fill, the claim binds to no Pod; the warden ends
    with StartTimeout after --k8s-start-timeout, naming the refusal, and deletes its claim."""
    double.pod_quota["default"] = 0
    identity = MtlsIdentity.generate_client()
    started = trio.current_time()
    with trio.fail_after(30):
        result = await _pool_warden(double, identity, TRIO_SANDBOX_K8S_START_TIMEOUT="3")
    assert trio.current_time() - started < 25
    assert result.returncode == 125
    stderr = result.stderr.decode()
    assert "StartTimeout" in stderr, stderr
    assert "exceeded quota" in stderr  # the pool's FailedCreate event
    assert double.objects("sandboxclaims") == []


@needs_bwrap
@needs_root
async def test_a_pool_whose_image_cannot_be_pulled_is_a_clear_error(double: KubeDouble) -> None:
    identity = MtlsIdentity.generate_client()
    with trio.fail_after(30):
        result = await _pool_warden(double, identity, image="registry.invalid/nope:1")
    assert result.returncode == 125
    assert b"ErrImagePull" in result.stderr or b"ImagePullBackOff" in result.stderr, result.stderr
    assert double.objects("sandboxclaims") == []


@needs_bwrap
@needs_root
async def test_the_sweep_removes_a_pool_left_behind(double: KubeDouble) -> None:
    """A pool (with its template and policy) whose owner host is gone, and a claim whose warden
    is gone: the sweep deletes them, the pool's Pods with them; a live owner's pool stays."""
    own = process_identity(os.getpid()) or ""
    dead_pid = 2**22 + 1
    dead = own.replace(f":{os.getpid()}:", f":{dead_pid}:")
    options = KubernetesOptions(api="agent-sandbox", python=sys.executable, warm_pool_size=1)
    spec = parse_wrap_args(
        ["wrap", "--backend", "kubernetes", "-p", "127.0.0.1:18080:8080", IMAGE, "--", *TOOL_SERVER]
    )
    warm = warm_pod_spec(spec, options, PodSettings(memory_bytes=None, cpus=None))
    objects: list[tuple[str, dict[str, Any]]] = []
    for pid, identity in ((dead_pid, dead), (os.getpid(), own)):
        pool = PodPlan.for_pool("default", template_key(warm) + str(pid), owner_pid=pid)
        pool = PodPlan(
            pool.name,
            pool.namespace,
            pool.labels,
            tuple((k, identity if k.endswith("/owner") else v) for k, v in pool.annotations),
        )
        objects += [
            ("networkpolicies", pool_policy_manifest(pool)),
            ("sandboxtemplates", sandbox_template_manifest(pool, warm)),
            ("sandboxwarmpools", warm_pool_manifest(pool, 1, options)),
        ]
    gone_pool = objects[2][1]["metadata"]["name"]
    live_pool = objects[5][1]["metadata"]["name"]
    claim_plan = PodPlan.new("default", owner_pid=dead_pid)
    claim_plan = PodPlan(
        claim_plan.name,
        "default",
        claim_plan.labels,
        tuple((k, dead if k.endswith("/owner") else v) for k, v in claim_plan.annotations),
    )
    live_plan = PodPlan.for_pool("default", "x", owner_pid=os.getpid())
    objects.append(("sandboxclaims", pool_claim_manifest(claim_plan, live_plan)))

    def create(api_client: Any) -> None:
        import kubernetes

        custom = kubernetes.client.CustomObjectsApi(api_client)
        network = kubernetes.client.NetworkingV1Api(api_client)
        for plural, manifest in objects:
            if plural == "networkpolicies":
                network.create_namespaced_network_policy("default", cast(Any, manifest))
            else:
                custom.create_namespaced_custom_object(GROUP, VERSION, "default", plural, manifest)

    await official_client(double, create)
    # Older than the sweep's "may still be being set up" margin.
    for (plural, _, _), obj in double.store.objects.items():
        if plural in ("sandboxtemplates", "networkpolicies"):
            obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    assert _members(double, gone_pool)

    async def sweep() -> str:
        env = {**os.environ, "KUBECONFIG": str(double.kubeconfig)}
        with trio.fail_after(HANG_GUARD_SECONDS):
            done = await trio.run_process(
                [sys.executable, "-m", "trio_sandbox.warden", "sweep"],
                capture_stdout=True,
                capture_stderr=True,
                env=env,
            )
        return done.stdout.decode()

    report = await sweep()
    assert f"deleted SandboxWarmPool default/{gone_pool}" in report, report
    assert f"deleted SandboxClaim default/{claim_plan.name}" in report
    assert live_pool not in report
    await wait_until(
        double, lambda: not _members(double, gone_pool), what="the pool's Sandboxes went with it"
    )
    await wait_until(
        double,
        lambda: all(
            pod["metadata"]["labels"].get(LABEL_POOL) != gone_pool for pod in double.pods()
        ),
        what="the gone pool's Pods are gone",
    )
    report += await sweep()
    assert f"deleted SandboxTemplate default/{gone_pool}" in report, report
    assert f"deleted NetworkPolicy default/{gone_pool}" in report, report
    kinds = {
        plural: [o["metadata"]["name"] for o in double.objects(plural)]
        for plural in ("sandboxwarmpools", "sandboxtemplates", "networkpolicies", "sandboxclaims")
    }
    assert kinds == {
        "sandboxwarmpools": [live_pool],
        "sandboxtemplates": [live_pool],
        "networkpolicies": [live_pool],
        "sandboxclaims": [],
    }


# ---- the manifests and the options ----------------------------------------------------------


def _spec(*options: str) -> Any:
    return parse_wrap_args(
        [
            "wrap",
            "--backend",
            "kubernetes",
            *options,
            IMAGE,
            "--",
            "python3",
            "-m",
            "trio_sandbox.tools",
        ]
    )


def test_the_pool_manifests_are_what_agent_sandbox_expects() -> None:
    options = KubernetesOptions(api="agent-sandbox", warm_pool_size=3)
    spec = _spec("-p", "127.0.0.1:18080:8080", "--env", "STAKPAK_MCP_CLIENT_CA=secret-ca")
    warm = warm_pod_spec(spec, options, PodSettings())
    (container,) = warm["containers"]
    assert container["command"] == [
        "python3",
        "-m",
        PROVISION_MODULE,
        "--port",
        "8080",
        "--",
        "python3",
        "-m",
        "trio_sandbox.tools",
    ]
    # The sandbox's own variables are not in the template (only the limits line is).
    assert [v["name"] for v in container["env"]] == ["TRIO_SANDBOX_LIMITS"]
    assert "secret-ca" not in json.dumps(warm)
    pool = PodPlan.for_pool("default", template_key(warm))
    assert pool.name.startswith("trio-sandbox-pool-")
    assert len(pool.name) <= 63
    assert PodPlan.for_pool("default", template_key(warm)).name == pool.name
    template = sandbox_template_manifest(pool, warm)
    assert template["apiVersion"] == "extensions.agents.x-k8s.io/v1alpha1"
    assert template["kind"] == "SandboxTemplate"
    assert template["spec"]["networkPolicy"] == {"ingress": [], "egress": []}
    assert template["spec"]["envVarsInjectionPolicy"] == "Disallowed"
    assert template["spec"]["podTemplate"]["metadata"]["labels"][LABEL_POOL] == pool.name
    assert template["spec"]["podTemplate"]["spec"] == warm
    warm_pool = warm_pool_manifest(pool, 3, options)
    assert warm_pool["kind"] == "SandboxWarmPool"
    assert warm_pool["spec"] == {
        "replicas": 3,
        "sandboxTemplateRef": {"name": pool.name},
        "ttlSecondsAfterCreated": options.deadline_seconds,
    }
    plan = PodPlan.new("default")
    claim = pool_claim_manifest(plan, pool)
    assert claim["spec"]["sandboxTemplateRef"] == {"name": pool.name}
    assert claim["spec"]["warmpool"] == pool.name
    assert "env" not in claim["spec"]
    assert claim["spec"]["additionalPodMetadata"]["labels"][LABEL_SANDBOX] == plan.sandbox_id
    policy = pool_policy_manifest(pool)
    assert policy["spec"]["podSelector"] == {"matchLabels": {LABEL_POOL: pool.name}}
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == []
    assert policy["spec"]["egress"] == []
    # The double's v1alpha1 field checks accept them, and refuse a misspelt field.
    validate("sandboxtemplates", template)
    validate("sandboxwarmpools", warm_pool)
    validate("sandboxclaims", claim)
    for plural, manifest, field in (
        ("sandboxwarmpools", warm_pool, "replica"),
        ("sandboxclaims", claim, "warmPool"),
        ("sandboxtemplates", template, "envVarsInjection"),
    ):
        wrong = json.loads(json.dumps(manifest))
        wrong["spec"][field] = 1
        with pytest.raises(ApiStatusError, match=f'unknown field "{field}"'):
            validate(plural, wrong)


def test_a_warm_pool_needs_a_published_port_and_the_agent_sandbox_api() -> None:
    from trio_sandbox.warden.kubernetes._arguments import add_kubernetes_options
    from trio_sandbox.warden.kubernetes._options import kubernetes_options

    with pytest.raises(KubernetesRequestError, match="needs a published port"):
        warm_pod_spec(_spec(), KubernetesOptions(warm_pool_size=1), PodSettings())

    def parsed(**env: str) -> KubernetesOptions:
        parser = argparse.ArgumentParser()
        add_kubernetes_options(parser)
        environ = {f"TRIO_SANDBOX_K8S_{key}": value for key, value in env.items()}
        return kubernetes_options(parser.parse_args([]), environ=environ)

    assert parsed(API="agent-sandbox", WARM_POOL="3").warm_pool_size == 3
    assert parsed(API="agent-sandbox", WARM_POOL="3").warm_pool is None
    named = parsed(API="agent-sandbox", WARM_POOL="fast", SANDBOX_TEMPLATE="tools")
    assert (named.warm_pool, named.warm_pool_size) == ("fast", None)
    for env, message in (
        ({"WARM_POOL": "2"}, "need --k8s-api agent-sandbox"),
        ({"API": "agent-sandbox", "WARM_POOL": "0"}, "expected 1 to"),
        ({"API": "agent-sandbox", "WARM_POOL": "2", "SANDBOX_TEMPLATE": "t"}, "makes its own"),
    ):
        with pytest.raises(KubernetesRequestError, match=message):
            parsed(**env)


# ---- the stub ---------------------------------------------------------------------------------


def test_the_stub_parses_only_whole_requests() -> None:
    assert parse_request(b'{"env": {"A": "1"}, "nonce": "abc123"}') == ({"A": "1"}, "abc123")
    for bad in (
        b"",
        b"GET / HTTP/1.1",
        b"\x16\x03\x01",  # a TLS ClientHello
        b'{"env": {"A": 1}, "nonce": "n"}',
        b'{"env": {"A=B": "1"}, "nonce": "n"}',
        b'{"env": {}, "nonce": "not alnum\\n"}',
        b'["env"]',
    ):
        assert parse_request(bad) is None, bad


async def test_the_stub_hands_the_port_over_once() -> None:
    """Junk and a silent connection do not hand the Pod over; the first whole request does,
    its nonce is echoed, the command runs with the variables; the stub is gone after it."""
    port = free_port()
    script = (
        "import os, socket; s = socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('127.0.0.1', {port})); s.listen(); "
        "print('SERVED', os.environ['X_CA'], flush=True)"
    )
    argv = [sys.executable, "-m", PROVISION_MODULE, "--port", str(port), "--"]
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                [*argv, sys.executable, "-c", script],
                stdout=subprocess.PIPE,
                check=False,
            )
        )
        assert process.stdout is not None
        output = b""
        with trio.fail_after(HANG_GUARD_SECONDS):
            while READY_LINE.encode() not in output:
                output += await process.stdout.receive_some(4096)

            async def exchange(data: bytes) -> bytes:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                async with stream:
                    await stream.send_all(data)
                    reply = b""
                    while chunk := await stream.receive_some(4096):
                        reply += chunk
                    return reply

            assert await exchange(b"\x16\x03\x01 junk\n") == b""
            assert await exchange(b'{"env": {"X_CA": "mine"}, "nonce": "n1"}\n') == b"ok n1\n"
            while chunk := await process.stdout.receive_some(4096):
                output += chunk
            assert b"SERVED mine" in output
            assert await process.wait() == 0


def test_the_stub_runs_in_process_only_a_package_of_its_own_interpreter() -> None:
    """A package of this interpreter is imported while the Pod waits; a plain module (whose body
    is the program: it must not run before the variables came), another interpreter or a name
    that does not import is left to exec."""
    assert preload([sys.executable, "-m", "trio_sandbox.tools"]) == "trio_sandbox.tools"
    assert preload([sys.executable, "-m", "json.tool"]) is None
    assert preload(["/bin/sh", "-m", "trio_sandbox.tools"]) is None
    assert preload([sys.executable, "-m", "no_such_package_here"]) is None
    assert preload([sys.executable, "-c", "pass"]) is None


@needs_bwrap
@needs_root
async def test_the_host_killed_takes_its_pool_with_the_lifeline(double: KubeDouble) -> None:
    """The pool's owner (the warden's parent, the host) dies by SIGKILL with a sandbox claimed
    and a warm Pod waiting: the warden's lifeline deletes its claim and the pool, so no Pod is
    left running; the template and the deny-all policy (no process) are left to the sweep."""
    identity = MtlsIdentity.generate_client()
    launcher = "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(120)"
    argv = [sys.executable, "-c", launcher]
    argv += wrap_argv(*_pool_options(), *contract_env(identity), command=TOOL_SERVER)
    env = warden_env(double, TRIO_SANDBOX_K8S_API="agent-sandbox", TRIO_SANDBOX_K8S_WARM_POOL="1")
    async with trio.open_nursery() as nursery:
        parent: trio.Process = await nursery.start(
            partial(trio.run_process, argv, check=False, env=env)
        )

        def claimed_and_warm() -> bool:
            pods = double.pods()
            return (
                len(double.objects("sandboxclaims")) == 1
                and len(pods) == 2
                and all(p.get("status", {}).get("phase") == "Running" for p in pods)
            )

        await wait_until(double, claimed_and_warm, what="a claimed Pod and a warm one run")
        parent.kill()
    await wait_until(
        double,
        lambda: (
            double.pods() == []
            and double.objects("sandboxclaims") == []
            and double.objects("sandboxwarmpools") == []
            and double.objects("sandboxes") == []
        ),
        what="the lifeline deleted the claim and the pool, and every Pod went",
    )
    assert len(double.objects("sandboxtemplates")) == 1
