"""The kubernetes back end without a cluster: manifests, option parsers, sweep decisions, the
log's timestamps and the outage clock (virtual time)."""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from tests.kubernetes.kube_store import restricted_violations
from trio_sandbox.contract import NetworkMode
from trio_sandbox.warden import parse_wrap_args
from trio_sandbox.warden._errors import ApiUnreachable, KubernetesError, KubernetesRequestError
from trio_sandbox.warden.kubernetes._logs import since_time
from trio_sandbox.warden.kubernetes._options import (
    ClaimVolume,
    EgressDestination,
    KubernetesOptions,
    PodSettings,
    Toleration,
    parse_claim_volume,
    parse_node_selector,
    parse_toleration,
)
from trio_sandbox.warden.kubernetes._pod import (
    PodPlan,
    network_policy_manifest,
    pod_command,
    pod_manifest,
    pod_settings_from_wrap,
    refuse_host_volumes,
    refuse_unreachable_tunnel,
)
from trio_sandbox.warden.kubernetes._status import Outage, fatal_waiting, pod_failure
from trio_sandbox.warden.kubernetes._sweep import leftover_reason

_label = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?", fullmatch=True)
_value = st.from_regex(r"([A-Za-z0-9]([A-Za-z0-9_.-]{0,20}[A-Za-z0-9])?)?", fullmatch=True)


def _spec(*options: str, command: tuple[str, ...] = ("sleep", "1")) -> Any:
    return parse_wrap_args(["wrap", "--backend", "kubernetes", *options, "img:1", "--", *command])


def test_pod_is_restricted_and_bounded() -> None:
    options = ["-p", "127.0.0.1:4000:8080", "--env", "A=b", "--workdir", "/work"]
    spec = _spec(*options, "--memory", "2G", "--cpus", "2", "--tmp-size", "64M")
    assert isinstance(spec.backend_options, KubernetesOptions)
    settings = pod_settings_from_wrap(spec)
    assert settings == PodSettings(memory_bytes=2 * 1024**3, cpus=2.0, tmp_size_bytes=64 * 1024**2)
    manifest = pod_manifest(PodPlan.new("ns"), spec, spec.backend_options, settings)
    assert restricted_violations(manifest["spec"]) == []
    (container,) = manifest["spec"]["containers"]
    assert container["env"][0] == {"name": "A", "value": "b"}
    assert container["env"][1]["name"] == "TRIO_SANDBOX_LIMITS"
    limits = json.loads(container["env"][1]["value"])
    assert (limits["memory"], limits["cpus"], limits["tmp_size"]) == (
        2 * 1024**3,
        2.0,
        64 * 1024**2,
    )
    assert limits["memory_enforced_by"] == "kubernetes (the Pod's resources.limits)"
    assert container["workingDir"] == "/work"
    assert container["resources"]["limits"] == {"memory": str(2 * 1024**3), "cpu": "2000m"}
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert manifest["metadata"]["namespace"] == "ns"
    tmp = manifest["spec"]["volumes"][0]
    assert tmp == {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": str(64 * 1024**2)}}


def test_unlimited_means_no_bound_in_the_pod() -> None:
    spec = _spec("--memory", "unlimited", "--cpus", "unlimited", "--tmp-size", "unlimited")
    assert isinstance(spec.backend_options, KubernetesOptions)
    manifest = pod_manifest(
        PodPlan.new("ns"), spec, spec.backend_options, pod_settings_from_wrap(spec)
    )
    (container,) = manifest["spec"]["containers"]
    assert container["resources"] == {"limits": {}, "requests": {}}
    assert manifest["spec"]["volumes"][0]["emptyDir"] == {"medium": "Memory"}


def test_root_user_is_refused() -> None:
    spec = _spec("--user", "0")
    assert isinstance(spec.backend_options, KubernetesOptions)
    with pytest.raises(KubernetesRequestError, match="non-root"):
        pod_manifest(PodPlan.new("ns"), spec, spec.backend_options, PodSettings())


def test_the_hosts_interpreter_becomes_the_images() -> None:
    options = KubernetesOptions(python="/usr/local/bin/python3")
    assert pod_command((sys.executable, "-m", "trio_sandbox.tools"), options) == [
        "/usr/local/bin/python3",
        "-m",
        "trio_sandbox.tools",
    ]
    assert pod_command(("python3", "-c", sys.executable), options) == [
        "python3",
        "-c",
        sys.executable,
    ]


def test_network_policy_for_each_network() -> None:
    plan = PodPlan.new("ns")
    closed, _ = network_policy_manifest(plan, PodSettings(network=NetworkMode.NONE))
    assert closed["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert closed["spec"]["ingress"] == []
    assert closed["spec"]["egress"] == []
    assert closed["spec"]["podSelector"] == {
        "matchLabels": {"trio-sandbox.io/sandbox": plan.sandbox_id}
    }
    open_egress, _ = network_policy_manifest(plan, PodSettings(network=NetworkMode.HOST))
    assert open_egress["spec"]["policyTypes"] == ["Ingress"]
    assert "egress" not in open_egress["spec"]
    allow = (
        EgressDestination("10.1.2.3", 443),
        EgressDestination("::1"),
        EgressDestination("pypi.org", 443),
    )
    listed, skipped = network_policy_manifest(
        plan, PodSettings(network=NetworkMode.ALLOW, allow=allow)
    )
    assert listed["spec"]["egress"] == [
        {"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}], "ports": [{"protocol": "TCP", "port": 443}]},
        {"to": [{"ipBlock": {"cidr": "::1/128"}}]},
    ]
    assert skipped == [EgressDestination("pypi.org", 443)]


def test_volumes_binds_refused_claims_kept() -> None:
    with pytest.raises(KubernetesRequestError, match="PersistentVolumeClaim"):
        refuse_host_volumes(_spec("--volume", "/tmp:/work"))
    spec = _spec("--volume", "data:/data:ro", "--volume", "pvc:work:/work")
    refuse_host_volumes(spec)
    assert isinstance(spec.backend_options, KubernetesOptions)
    assert spec.backend_options.claims == (ClaimVolume("work", "/work"),)
    manifest = pod_manifest(PodPlan.new("ns"), spec, spec.backend_options, PodSettings())
    claims = [
        v["persistentVolumeClaim"]
        for v in manifest["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == [
        {"claimName": "work", "readOnly": False},
        {"claimName": "data", "readOnly": True},
    ]


def test_pvc_needs_the_kubernetes_backend(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_wrap_args(["wrap", "--volume", "pvc:work:/work", "host", "--", "true"])
    assert exited.value.code == 2
    assert "needs --backend kubernetes" in capsys.readouterr().err


def test_gvisor_refused_only_with_a_port() -> None:
    spec = _spec("--k8s-runtime-class", "gvisor", "-p", "127.0.0.1:4000:8080")
    assert isinstance(spec.backend_options, KubernetesOptions)
    with pytest.raises(KubernetesRequestError, match="gVisor"):
        refuse_unreachable_tunnel(spec, spec.backend_options)
    forced = _spec(
        "--k8s-runtime-class", "runsc", "--k8s-tunnel", "portforward", "-p", "127.0.0.1:4000:8080"
    )
    assert isinstance(forced.backend_options, KubernetesOptions)
    refuse_unreachable_tunnel(forced, forced.backend_options)
    portless = _spec("--k8s-runtime-class", "gvisor")
    assert isinstance(portless.backend_options, KubernetesOptions)
    refuse_unreachable_tunnel(portless, portless.backend_options)


def test_options_fall_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIO_SANDBOX_K8S_NAMESPACE", "agents")
    monkeypatch.setenv("TRIO_SANDBOX_K8S_CONTEXT", "prod")
    monkeypatch.setenv("TRIO_SANDBOX_K8S_NODE_SELECTOR", "pool=sandbox,zone=a")
    spec = _spec("--k8s-context", "staging")
    assert isinstance(spec.backend_options, KubernetesOptions)
    assert (spec.backend_options.namespace, spec.backend_options.context) == ("agents", "staging")
    assert spec.backend_options.node_selector == (("pool", "sandbox"), ("zone", "a"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--k8s-deadline", "soon"], "expected a whole number"),
        (["--k8s-deadline", "0"], "must be positive"),
        (["--k8s-toleration", "a:Sometimes"], "the effect must be one of"),
        (["--k8s-node-selector", "novalue"], "expected KEY=VALUE"),
        (["--k8s-warm-pool", "fast"], "need --k8s-api agent-sandbox"),
        (["--k8s-api", "agent-sandbox", "--k8s-warm-pool", "fast"], "go together"),
        (["--volume", "pvc:Bad_Name:/work"], "PersistentVolumeClaim name"),
    ],
)
def test_bad_options_exit_2_naming_them(
    options: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _spec(*options)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@given(
    key=_label, value=st.none() | _value, effect=st.sampled_from([None, "NoSchedule", "NoExecute"])
)
def test_toleration_round_trip(key: str, value: str | None, effect: str | None) -> None:
    text = key + (f"={value}" if value is not None else "") + (f":{effect}" if effect else "")
    assert parse_toleration(text) == Toleration(key, value, effect)


@given(
    claim=_label,
    target=st.from_regex(r"/[a-z]{1,8}(/[a-z]{1,8})?", fullmatch=True),
    ro=st.booleans(),
)
def test_claim_volume_round_trip(claim: str, target: str, ro: bool) -> None:
    text = f"pvc:{claim}:{target}" + (":ro" if ro else "")
    assert parse_claim_volume(text) == ClaimVolume(claim, target, ro)
    assert parse_claim_volume(text.removeprefix("pvc:")) == ClaimVolume(claim, target, ro)


@given(key=_label, value=_value)
def test_node_selector_round_trip(key: str, value: str) -> None:
    assert parse_node_selector(f"{key}={value}") == (key, value)


@given(
    st.lists(
        st.datetimes(min_value=datetime.datetime(1970, 1, 1), timezones=st.just(datetime.UTC)),
        min_size=2,
        max_size=5,
    )
)
def test_log_timestamps_name_their_second(moments: list[datetime.datetime]) -> None:
    """The kubelet trims trailing zeros of the fraction: ``sinceTime`` is still the second."""

    def stamp(moment: datetime.datetime) -> str:
        text = moment.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
        return text + "Z"

    for moment in moments:
        assert since_time(stamp(moment)) == moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod(**fields: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "metadata": {
            "name": "p",
            "labels": {},
            "annotations": {},
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"activeDeadlineSeconds": 3600},
        "status": {"phase": "Running"},
    }
    for key, value in fields.items():
        pod[key].update(value)
    return pod


def test_sweep_decisions() -> None:
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert leftover_reason(_pod(), start + datetime.timedelta(minutes=30)) is None
    overdue = leftover_reason(_pod(), start + datetime.timedelta(hours=2))
    assert overdue == "past its deadline by 3600 s"
    finished = _pod(
        status={
            "phase": "Succeeded",
            "containerStatuses": [
                {"state": {"terminated": {"finishedAt": "2026-01-01T00:10:00Z"}}}
            ],
        }
    )
    assert leftover_reason(finished, start + datetime.timedelta(minutes=15)) is None
    assert leftover_reason(finished, start + datetime.timedelta(minutes=25)) == "finished 900 s ago"
    # Another host's live-looking owner is not judged by its pid here.
    foreign = _pod(
        metadata={
            "labels": {"trio-sandbox.io/owner-host": "elsewhere", "trio-sandbox.io/owner-pid": "1"},
            "annotations": {"trio-sandbox.io/owner": "other-boot:1:5"},
        }
    )
    assert leftover_reason(foreign, start + datetime.timedelta(minutes=30)) is None


def test_pod_status_reasons() -> None:
    failed = pod_failure(
        {
            "metadata": {"name": "p"},
            "spec": {"activeDeadlineSeconds": 9},
            "status": {"phase": "Failed", "reason": "DeadlineExceeded"},
        }
    )
    assert failed is not None
    assert failed.reason == "DeadlineExceeded"
    evicted = pod_failure(
        {
            "metadata": {"name": "p"},
            "status": {"phase": "Failed", "reason": "Evicted", "message": "low on memory"},
        }
    )
    assert str(evicted) == "Pod p: low on memory (reason: Evicted)"
    waiting = {
        "metadata": {"name": "p"},
        "status": {
            "containerStatuses": [
                {
                    "name": "sandbox",
                    "state": {
                        "waiting": {
                            "reason": "CreateContainerConfigError",
                            "message": "secret x not found",
                        }
                    },
                }
            ]
        },
    }
    error = fatal_waiting(waiting)
    assert error is not None
    assert (error.reason, error.message) == (
        "CreateContainerConfigError",
        "the container of Pod p cannot start: secret x not found",
    )
    creating = {
        "metadata": {"name": "p"},
        "status": {
            "containerStatuses": [
                {"name": "sandbox", "state": {"waiting": {"reason": "ContainerCreating"}}}
            ]
        },
    }
    assert fatal_waiting(creating) is None


async def test_outage_gives_up_after_its_grace(autojump_clock: trio.testing.MockClock) -> None:
    """Pauses double from 0.1 s up to 2 s; the error comes at the first try past the grace:
    0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 2 = 5.1 s for a grace of 5 s. A success resets it."""
    failure = ApiUnreachable("Unreachable", "cannot watch")
    outage = Outage(grace=5.0)
    start = trio.current_time()
    for _ in range(3):
        await outage.wait_or_give_up(failure)
    outage.reset()
    assert trio.current_time() - start == pytest.approx(0.7)
    start = trio.current_time()

    async def until_it_gives_up() -> None:
        while True:
            await outage.wait_or_give_up(failure)

    with pytest.raises(KubernetesError) as caught:
        await until_it_gives_up()
    assert trio.current_time() - start == pytest.approx(5.1)
    assert caught.value.reason == "Unreachable"
    assert "unreachable for 5 s (cannot watch)" in str(caught.value)


async def test_other_back_ends_never_import_the_client() -> None:
    """kr8s (and httpx) stay out of a warden that runs another back end."""
    argv = [sys.executable, "-X", "importtime", "-m", "trio_sandbox.warden", "wrap"]
    result = await trio.run_process(
        [*argv, "--backend", "process", "host", "--", "true"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.decode().splitlines()}
    assert "trio" in imported
    assert not {"kr8s", "httpx", "httpx_ws", "trio_sandbox.warden.kubernetes._api"} & imported


def test_the_allow_list_becomes_network_policy_destinations_without_a_proxy() -> None:
    """On a cluster there is no egress proxy (the warden cannot listen in a remote Pod): the
    allow-list's addresses become NetworkPolicy rules, ports 80 and 443 for a portless entry,
    denied addresses none; names are kept apart (the policy cannot express them)."""
    spec = _spec(
        *("--network", "allow", "--allow-domain", "10.1.2.3:8443", "--allow-domain", "10.0.0.9"),
        *("--allow-domain", "pypi.org", "--allow-domain", "[fd00::5]:5000"),
        *("--deny-domain", "10.0.0.9"),
    )
    assert not any(name.lower().endswith("_proxy") for name, _ in spec.env)
    assert pod_settings_from_wrap(spec).allow == (
        EgressDestination("10.1.2.3", 8443),
        EgressDestination("pypi.org", 80),
        EgressDestination("pypi.org", 443),
        EgressDestination("fd00::5", 5000),
    )
