"""The kubernetes back end end to end, against the API server double.

Each Pod runs the real tool server in the local bubblewrap sandbox; the host side is the real
``open_sandbox`` (mutual TLS through the warden's published port and the API server's
port-forward). The double is kept honest by kubectl and the official Python client, which look
at (and delete) the same objects during a sandbox's life.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from tests.kubernetes.kube_double import ADMIN_TOKEN, SANDBOX_ROLE, KubeDouble
from tests.kubernetes.kube_harness import (
    ECHO_SERVER,
    HANG_GUARD_SECONDS,
    IMAGE,
    TOOL_SERVER,
    contract_env,
    free_port,
    kubectl,
    kubectl_json,
    named,
    official_client,
    run_warden,
    start_warden,
    wait_until,
    warden_env,
    wrap_argv,
)
from tests.support.sandbox_users import SandboxUser
from trio_sandbox.mcp import open_mcp_client
from trio_sandbox.sandbox import SandboxConfig, SandboxStartError, open_sandbox
from trio_sandbox.tls import MtlsIdentity

pytestmark = [
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="the double runs Pods in bubblewrap"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the double's Pods run as uid 65534 (needs root)"),
]


def _text(result: Any) -> str:
    return "".join(getattr(item, "text", "") for item in result.content)


async def test_open_sandbox_on_the_cluster_end_to_end(cluster_env: KubeDouble) -> None:
    """SandboxConfig(backend="kubernetes"): the tool runs in the Pod, through mutual TLS over
    the port-forward; kubectl and the official client see the Pod, its policy and its log;
    leaving removes both."""
    double = cluster_env
    config = SandboxConfig(backend="kubernetes", warm_spares=0, image=IMAGE)
    async with open_sandbox(config) as sandbox:
        result = await sandbox.call_tool("run_command", {"command": "id -u; echo from-the-pod"})
        assert not result.is_error
        assert _text(result).splitlines()[:2] == ["65534", "from-the-pod"]
        (pod,) = double.pods()
        name = pod["metadata"]["name"]
        labels = pod["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "trio-sandbox"
        assert labels["trio-sandbox.io/owner-pid"] == str(sandbox.warden_pid)
        assert name == f"trio-sandbox-{labels['trio-sandbox.io/sandbox']}"

        listing = await kubectl_json(
            double, "get", "pods", "-l", "app.kubernetes.io/managed-by=trio-sandbox"
        )
        assert [item["metadata"]["name"] for item in listing["items"]] == [name]
        assert listing["items"][0]["status"]["phase"] == "Running"
        log = (await kubectl(double, "logs", name)).stdout.decode()
        assert "---BEGIN STAKPAK SERVER CA---" in log
        assert "MCP server started at https://0.0.0.0:8080/mcp" in log
        policies = await kubectl_json(double, "get", "networkpolicies")
        assert [item["metadata"]["name"] for item in policies["items"]] == [name]
        assert policies["items"][0]["spec"]["ingress"] == []
        assert policies["items"][0]["spec"]["egress"] == []

        def read(api_client: Any) -> tuple[list[str], str]:
            import kubernetes

            core = kubernetes.client.CoreV1Api(api_client)
            pods = core.list_namespaced_pod("default", label_selector="trio-sandbox.io/sandbox")
            names = [str(p.metadata.name) for p in pods.items if p.metadata is not None]
            return names, core.read_namespaced_pod_log(name, "default")

        pods, official_log = await official_client(double, read)
        assert pods == [name]
        assert official_log.splitlines()[0] == "---BEGIN STAKPAK SERVER CA---"
    assert double.pods() == []
    assert double.objects("networkpolicies") == []
    assert (await kubectl_json(double, "get", "pods"))["items"] == []


async def test_pod_is_the_restricted_profile_with_the_settings(double: KubeDouble) -> None:
    """What the cluster was asked for, read back with kubectl while the Pod runs."""
    identity = MtlsIdentity.generate_client()
    options = [
        "--k8s-runtime-class",
        "kata",
        "--k8s-node-selector",
        "kubernetes.io/os=linux",
        "--k8s-toleration",
        "sandbox=true:NoSchedule",
        "--k8s-deadline",
        "600",
        "-p",
        f"127.0.0.1:{free_port()}:8080",
    ]
    async with start_warden(
        double, *options, *contract_env(identity), command=TOOL_SERVER
    ) as warden:
        await warden.ca_block()
        (pod,) = (await kubectl_json(double, "get", "pods"))["items"]
        spec = pod["spec"]
        (container,) = spec["containers"]
        assert spec["restartPolicy"] == "Never"
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        assert spec["activeDeadlineSeconds"] == 600
        assert spec["runtimeClassName"] == "kata"
        assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
        assert spec["tolerations"] == [
            {"key": "sandbox", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
        ]
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["resources"]["limits"] == container["resources"]["requests"]
        assert container["command"] == [
            sys.executable,
            "-m",
            "trio_sandbox.tools",
        ]
        tmp = next(volume for volume in spec["volumes"] if volume["name"] == "tmp")
        assert tmp["emptyDir"]["medium"] == "Memory"
        assert int(tmp["emptyDir"]["sizeLimit"]) > 0
        annotations = pod["metadata"]["annotations"]
        assert annotations["trio-sandbox.io/owner"].split(":")[1] == str(warden.process.pid)
        warden.interrupt()
        assert await warden.wait() == 130
    assert double.pods() == []
    assert double.objects("networkpolicies") == []


async def test_sigint_deletes_the_pod_and_then_its_policy(double: KubeDouble) -> None:
    identity = MtlsIdentity.generate_client()
    port = free_port()
    async with start_warden(
        double, "-p", f"127.0.0.1:{port}:8080", *contract_env(identity), command=TOOL_SERVER
    ) as warden:
        block = await warden.ca_block()
        context = identity.client_ssl_context(block.ca_pem)
        async with open_mcp_client(f"https://127.0.0.1:{port}/mcp", ssl_context=context) as client:
            tools = {tool.name for tool in await client.list_tools()}
            assert "run_command" in tools
        warden.interrupt()
        assert await warden.wait() == 130
    verbs = [(r.verb, r.resource) for r in double.requests if r.verb in ("create", "delete")]
    assert verbs[:2] == [("create", "networkpolicies"), ("create", "pods")]
    assert verbs[-2:] == [("delete", "pods"), ("delete", "networkpolicies")]
    assert double.pods() == []
    assert double.objects("networkpolicies") == []


async def test_kubectl_delete_during_the_sandbox_ends_the_warden(double: KubeDouble) -> None:
    async with start_warden(double, command=["sh", "-c", "echo up; exec sleep 60"]) as warden:
        assert await warden.line() == "up"
        (name,) = named(double.pods())
        await kubectl(double, "delete", "pod", name, "--wait=true")
        assert await warden.wait() == 125
    assert b"is being deleted by someone else" in bytes(warden.stderr)
    assert b"(reason: Deleted)" in bytes(warden.stderr)
    assert double.pods() == []
    assert double.objects("networkpolicies") == []


async def test_command_status_and_output_come_back(double: KubeDouble) -> None:
    result = await run_warden(double, command=["sh", "-c", "echo one; echo two >&2; exit 3"])
    assert result.returncode == 3
    assert result.stdout == b"one\ntwo\n"  # the Pod's log merges stdout and stderr
    assert b"ended with status 3 (Error) before its server CA block" in result.stderr
    assert double.pods() == []


async def test_image_pull_error_is_clear_with_events(double: KubeDouble) -> None:
    result = await run_warden(double, command=["true"], image="registry.invalid/nope:1")
    stderr = result.stderr.decode()
    assert result.returncode == 125, stderr
    assert "(reason: ErrImagePull)" in stderr or "(reason: ImagePullBackOff)" in stderr
    assert "events of the Pod:" in stderr
    assert 'Failed to pull image "registry.invalid/nope:1"' in stderr
    assert double.pods() == []
    assert double.objects("networkpolicies") == []


async def test_forbidden_names_the_permission(double: KubeDouble, tmp_path: Path) -> None:
    double.grant(
        "no-pods",
        "viewer",
        frozenset(
            {
                "create networkpolicies",
                "delete networkpolicies",
                "list pods",
                "list networkpolicies",
            }
        ),
    )
    double.write_kubeconfig(double.kubeconfig, token="no-pods")
    result = await run_warden(double, command=["true"])
    stderr = result.stderr.decode()
    assert result.returncode == 125
    assert "(reason: Forbidden)" in stderr
    assert 'User "viewer" cannot create resource "pods"' in stderr
    assert double.objects("networkpolicies") == []  # what was made before the refusal is gone


async def test_quota_exceeded(double: KubeDouble) -> None:
    double.pod_quota["default"] = 0
    result = await run_warden(double, command=["true"])
    assert result.returncode == 125
    assert b"exceeded quota: sandbox-quota" in result.stderr
    assert b"(reason: Forbidden)" in result.stderr


async def test_unschedulable_names_the_scheduler_message(double: KubeDouble) -> None:
    result = await run_warden(
        double, "--k8s-node-selector", "pool=gpu", "--k8s-start-timeout", "1.5", command=["true"]
    )
    stderr = result.stderr.decode()
    assert result.returncode == 125
    assert "(reason: Unschedulable)" in stderr
    assert "didn't match Pod's node affinity/selector" in stderr
    assert "FailedScheduling" in stderr
    assert double.pods() == []


async def test_deadline_exceeded(double: KubeDouble) -> None:
    result = await run_warden(
        double, "--k8s-deadline", "2", command=["sh", "-c", "echo up; exec sleep 60"]
    )
    stderr = result.stderr.decode()
    assert result.returncode == 125, stderr
    assert "(reason: DeadlineExceeded)" in stderr
    assert "activeDeadlineSeconds 2" in stderr
    assert result.stdout == b"up\n"


async def test_host_volume_refused_and_claim_mounted(double: KubeDouble, tmp_path: Path) -> None:
    refused = await run_warden(double, "--volume", f"{tmp_path}:/work", command=["true"])
    assert refused.returncode == 125
    assert b"use a PersistentVolumeClaim instead" in refused.stderr
    assert double.requests == []  # refused before the cluster was asked anything
    claim_dir = tmp_path / "claim"
    claim_dir.mkdir()
    claim_dir.chmod(0o777)
    double.add_claim("work", claim_dir)
    script = "echo kept > /work/file; cat /work/file; touch /usr/x 2>/dev/null || echo ro-root"
    result = await run_warden(double, "--volume", "pvc:work:/work", command=["sh", "-c", script])
    assert (result.returncode, result.stdout) == (0, b"kept\nro-root\n"), result.stderr
    assert (claim_dir / "file").read_text() == "kept\n"


async def test_missing_claim_is_unschedulable(double: KubeDouble) -> None:
    result = await run_warden(
        double, "--volume", "data:/work", "--k8s-start-timeout", "1.5", command=["true"]
    )
    assert result.returncode == 125
    assert b'persistentvolumeclaim "data" not found' in result.stderr


async def test_gvisor_is_refused_for_a_published_port(double: KubeDouble) -> None:
    result = await run_warden(
        double,
        "--k8s-runtime-class",
        "gvisor",
        "-p",
        f"127.0.0.1:{free_port()}:8080",
        command=["true"],
    )
    assert result.returncode == 125
    assert b"looks like gVisor" in result.stderr
    assert b"--k8s-tunnel portforward" in result.stderr
    assert double.requests == []


async def test_log_stream_cut_is_taken_up_again(cluster_env: KubeDouble) -> None:
    """The first log stream ends after one line (a proxy's timeout, say): the host still gets
    its CA block, and every line once."""
    double = cluster_env
    double.cut_log_streams = [1, 2]
    async with open_sandbox(
        SandboxConfig(backend="kubernetes", warm_spares=0, image=IMAGE)
    ) as sandbox:
        result = await sandbox.call_tool("run_command", {"command": "echo ok"})
        assert _text(result).startswith("ok")
    logs = [r for r in double.requests if r.resource == "pods/log"]
    assert len(logs) >= 3


async def test_log_lines_once_each_across_cuts(double: KubeDouble) -> None:
    double.cut_log_streams = [2, 1, 3]
    script = "for i in 1 2 3 4 5 6 7 8; do echo line-$i; done; sleep 1; echo last"
    result = await run_warden(double, command=["sh", "-c", script])
    expected = "".join(f"line-{i}\n" for i in range(1, 9)) + "last\n"
    assert (result.returncode, result.stdout.decode()) == (0, expected)


async def test_portforward_error_frame_closes_that_connection_only(double: KubeDouble) -> None:
    port = free_port()
    options = ["-p", f"127.0.0.1:{port}:7000"]
    async with start_warden(
        double, *options, command=[sys.executable, "-c", ECHO_SERVER, "7000"]
    ) as warden:
        assert await warden.line() == "READY"
        double.portforward_error = "error forwarding port 7000 to pod: simulated kubelet failure"
        with trio.fail_after(HANG_GUARD_SECONDS):
            first = await trio.open_tcp_stream("127.0.0.1", port)
            async with first:
                await first.send_all(b"hello\n")
                assert await first.receive_some() == b""  # closed, no data
            second = await trio.open_tcp_stream("127.0.0.1", port)
            async with second:
                await second.send_all(b"hello\n")
                assert await second.receive_some() == b"HELLO\n"
        warden.interrupt()
        assert await warden.wait() == 130
    assert b"simulated kubelet failure" in bytes(warden.stderr)


async def test_official_client_portforward_reaches_the_pod(double: KubeDouble) -> None:
    """The double's port-forward framing, checked by the official client's own code."""
    async with start_warden(
        double,
        "-p",
        f"127.0.0.1:{free_port()}:7000",
        command=[sys.executable, "-c", ECHO_SERVER, "7000"],
    ) as warden:
        assert await warden.line() == "READY"
        (name,) = named(double.pods())

        def forward(api_client: Any) -> bytes:
            import kubernetes
            from kubernetes.stream import portforward

            core = kubernetes.client.CoreV1Api(api_client)
            forwarded = portforward(
                core.connect_get_namespaced_pod_portforward, name, "default", ports="7000"
            )
            sock = forwarded.socket(7000)
            sock.settimeout(20)
            sock.sendall(b"official\n")
            answer = b""
            while not answer.endswith(b"\n"):
                answer += sock.recv(100)
            sock.close()
            return answer

        assert await official_client(double, forward) == b"OFFICIAL\n"


async def test_api_server_gone_mid_session_then_swept(double: KubeDouble, tmp_path: Path) -> None:
    """The API server vanishes: the warden gives up after --k8s-api-grace (125, naming it)
    and cannot delete its Pod; once the server is back, the sweep deletes the leftover."""
    from tests.kubernetes.kube_harness import CuttableRelay

    relay = CuttableRelay(int(double.url.rsplit(":", 1)[1]))
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.serve)
        through_relay = tmp_path / "relay-kubeconfig"
        double.write_kubeconfig(through_relay, server=f"https://127.0.0.1:{relay.port}")
        async with start_warden(
            double,
            "--k8s-api-grace",
            "2",
            command=["sh", "-c", "echo up; exec sleep 60"],
            KUBECONFIG=str(through_relay),
        ) as warden:
            assert await warden.line() == "up"
            relay.cut()
            status = await warden.wait()
        nursery.cancel_scope.cancel()
    stderr = bytes(warden.stderr).decode()
    assert status == 125, stderr
    assert "(reason: Unreachable)" in stderr
    assert "unreachable for 2 s" in stderr
    (leftover,) = named(double.pods())
    swept = await trio.run_process(
        [
            sys.executable,
            "-m",
            "trio_sandbox.warden",
            "sweep",
            "--k8s-kubeconfig",
            str(double.kubeconfig),
        ],
        capture_stdout=True,
        check=True,
    )
    assert (
        f"deleted Pod default/{leftover}: its warden (pid {warden.process.pid} on this host)"
        " is gone" in swept.stdout.decode()
    )
    await wait_until(double, lambda: double.pods() == [], what="the leftover Pod is deleted")
    assert double.objects("networkpolicies") == []


async def test_host_sees_a_start_error_with_the_reason(cluster_env: KubeDouble) -> None:
    config = SandboxConfig(
        backend="kubernetes", warm_spares=0, image="registry.invalid/missing:1", ca_timeout=60
    )
    with pytest.raises(SandboxStartError) as caught:
        async with open_sandbox(config):
            pass
    assert "ErrImagePull" in str(caught.value) or "ImagePullBackOff" in str(caught.value)


async def test_agent_sandbox_sandbox_and_claim(
    cluster_env: KubeDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    double = cluster_env
    monkeypatch.setenv("TRIO_SANDBOX_K8S_API", "agent-sandbox")
    async with open_sandbox(
        SandboxConfig(backend="kubernetes", warm_spares=0, image=IMAGE)
    ) as sandbox:
        assert _text(
            await sandbox.call_tool("run_command", {"command": "echo in-sandbox"})
        ).startswith("in-sandbox")
        (owned,) = double.objects("sandboxes")
        (pod,) = double.pods()
        assert pod["metadata"]["ownerReferences"][0]["name"] == owned["metadata"]["name"]
    assert double.objects("sandboxes") == []
    assert double.pods() == []
    template_spec = {
        "containers": [
            {
                "name": "sandbox",
                "image": IMAGE,
                "command": [sys.executable, "-m", "trio_sandbox.tools"],
                "ports": [{"containerPort": 8080}],
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65534,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
            }
        ]
    }
    double.add_object(
        "sandboxtemplates",
        {"metadata": {"name": "tools"}, "spec": {"podTemplate": {"spec": template_spec}}},
    )
    monkeypatch.setenv("TRIO_SANDBOX_K8S_WARM_POOL", "fast")
    monkeypatch.setenv("TRIO_SANDBOX_K8S_SANDBOX_TEMPLATE", "tools")
    async with open_sandbox(
        SandboxConfig(backend="kubernetes", warm_spares=0, image=IMAGE)
    ) as sandbox:
        assert _text(
            await sandbox.call_tool("run_command", {"command": "echo claimed"})
        ).startswith("claimed")
        (claim,) = double.objects("sandboxclaims")
        assert claim["spec"]["warmpool"] == "fast"
        (pod,) = double.pods()
        assert pod["metadata"]["name"].startswith("fast-")
    assert double.objects("sandboxclaims") == []
    assert double.pods() == []


async def test_sweep_keeps_live_owners_and_dry_run_lists(double: KubeDouble) -> None:
    from trio_sandbox.warden.kubernetes._pod import process_identity

    def make(api_client: Any) -> None:
        import kubernetes

        core = kubernetes.client.CoreV1Api(api_client)
        for name, pid in (("trio-sandbox-dead", 2**22 + 1), ("trio-sandbox-live", os.getpid())):
            identity = process_identity(os.getpid()) or ""
            owner = (
                identity.replace(f":{os.getpid()}:", f":{pid}:") if pid != os.getpid() else identity
            )
            from trio_sandbox.warden.kubernetes._pod import host_label

            manifest = {
                "metadata": {
                    "name": name,
                    "labels": {
                        "app.kubernetes.io/managed-by": "trio-sandbox",
                        "trio-sandbox.io/owner-host": host_label(),
                        "trio-sandbox.io/owner-pid": str(pid),
                    },
                    "annotations": {"trio-sandbox.io/owner": owner},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "sandbox",
                            "image": IMAGE,
                            "command": ["sleep", "60"],
                            "securityContext": {
                                "runAsNonRoot": True,
                                "runAsUser": 65534,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                        }
                    ]
                },
            }
            core.create_namespaced_pod("default", cast(Any, manifest))  # it takes dicts too

    await official_client(double, make)
    sweep = [
        sys.executable,
        "-m",
        "trio_sandbox.warden",
        "sweep",
        "--k8s-kubeconfig",
        str(double.kubeconfig),
    ]
    dry = await trio.run_process([*sweep, "--dry-run"], capture_stdout=True, check=True)
    assert dry.stdout.decode().splitlines() == [
        "would delete Pod default/trio-sandbox-dead: its warden (pid 4194305 on this host) is gone"
    ]
    assert named(double.pods()) == ["trio-sandbox-dead", "trio-sandbox-live"]
    await trio.run_process(sweep, capture_stdout=True, check=True)
    await wait_until(
        double,
        lambda: named(double.pods()) == ["trio-sandbox-live"],
        what="only the dead owner's Pod goes",
    )
    await kubectl(double, "delete", "pod", "trio-sandbox-live")


async def test_readme_role_is_enough(double: KubeDouble) -> None:
    """A token with exactly the README's Role runs a sandbox, port-forward included."""
    double.grant("sandbox-role", "agent-runner", SANDBOX_ROLE)
    double.write_kubeconfig(double.kubeconfig, token="sandbox-role")
    port = free_port()
    async with start_warden(
        double, "-p", f"127.0.0.1:{port}:7000", command=[sys.executable, "-c", ECHO_SERVER, "7000"]
    ) as warden:
        assert await warden.line() == "READY"
        with trio.fail_after(HANG_GUARD_SECONDS):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(b"role\n")
                assert await stream.receive_some() == b"ROLE\n"
        warden.interrupt()
        assert await warden.wait() == 130
    assert b"note: no sweep" not in bytes(warden.stderr)
    double.write_kubeconfig(double.kubeconfig, token=ADMIN_TOKEN)
    assert double.pods() == []


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
async def test_other_stop_signals(double: KubeDouble, stop: signal.Signals) -> None:
    async with start_warden(double, command=["sh", "-c", "echo up; exec sleep 60"]) as warden:
        assert await warden.line() == "up"
        warden.process.send_signal(stop)
        assert await warden.wait() == 128 + stop
    assert double.pods() == []


async def test_trio_sandbox_cli_call_on_the_cluster(double: KubeDouble) -> None:
    """``trio-sandbox call --backend kubernetes --image IMAGE``: nothing above the warden knows."""
    argv = [sys.executable, "-m", "trio_sandbox", "call", "--backend", "kubernetes"]
    argv += ["--image", IMAGE, "--json", "run_command", '{"command": "echo via-cli"}']
    with trio.fail_after(HANG_GUARD_SECONDS):
        result = await trio.run_process(
            argv, capture_stdout=True, capture_stderr=True, check=False, env=warden_env(double)
        )
    assert result.returncode == 0, result.stderr.decode()
    assert "via-cli" in result.stdout.decode()
    assert double.pods() == []


async def test_cli_call_on_the_cluster_as_each_kind_of_user(
    double: KubeDouble, sandbox_user: SandboxUser, workspace: Path
) -> None:
    """The host side as root and as an ordinary user (an IDE's user with a kubeconfig of their
    own): the warden's kubernetes back end runs as that user; the cluster is the same."""
    kubeconfig = workspace / "kubeconfig"
    shutil.copyfile(double.kubeconfig, kubeconfig)
    os.chown(kubeconfig, sandbox_user.uid, sandbox_user.gid)
    kubeconfig.chmod(0o600)
    env = sandbox_user.env(
        {
            "HOME": str(workspace),
            "KUBECONFIG": str(kubeconfig),
            # The Pods' interpreter: the double's kubelet (this process's user) runs them.
            "TRIO_SANDBOX_K8S_PYTHON": sys.executable,
            "TRIO_SANDBOX_K8S_START_TIMEOUT": "30",
        }
    )
    argv = sandbox_user.python_module(
        "trio_sandbox", "call", "--backend", "kubernetes", "--image", IMAGE, "run_command"
    )
    argv.append('{"command": "echo via-cli-as-$(id -u)"}')
    with trio.fail_after(HANG_GUARD_SECONDS):
        result = await trio.run_process(
            argv, capture_stdout=True, capture_stderr=True, check=False, env=env, cwd=workspace
        )
    assert result.returncode == 0, result.stderr.decode()
    assert "via-cli-as-" in result.stdout.decode()
    assert double.pods() == []


async def test_lifeline_parent_killed_deletes_the_pod(double: KubeDouble) -> None:
    """The warden's parent dies by SIGKILL: the warden (lifeline) deletes the Pod and then its
    NetworkPolicy, with no grace period, and exits."""
    launcher = "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(120)"
    argv = [sys.executable, "-c", launcher]
    argv += wrap_argv(command=["sh", "-c", "echo up; exec sleep 120"])
    async with trio.open_nursery() as nursery:
        parent: trio.Process = await nursery.start(
            partial(trio.run_process, argv, check=False, env=warden_env(double))
        )

        def running() -> bool:
            pods = double.pods()
            return len(pods) == 1 and pods[0].get("status", {}).get("phase") == "Running"

        await wait_until(double, running, what="the Pod runs")
        parent.kill()
    await wait_until(double, lambda: double.pods() == [], what="the lifeline deleted the Pod")
    await wait_until(
        double, lambda: double.objects("networkpolicies") == [], what="and then its policy"
    )
    deletes = [r for r in double.requests if r.verb == "delete" and r.resource == "pods"]
    assert len(deletes) == 1


async def test_claim_on_a_missing_template_times_out_clearly(double: KubeDouble) -> None:
    options = ["--k8s-api", "agent-sandbox", "--k8s-warm-pool", "fast"]
    options += ["--k8s-sandbox-template", "absent", "--k8s-start-timeout", "1"]
    result = await run_warden(double, *options, command=["true"])
    assert result.returncode == 125
    assert b"(reason: StartTimeout)" in result.stderr
    assert b"is the agent-sandbox controller running" in result.stderr
    assert double.objects("sandboxclaims") == []
    assert double.objects("networkpolicies") == []
