"""The kubernetes back end on the API server double against the local bubblewrap back end.

Both run the same tool server in the same bubblewrap sandbox: the double's "kubelet" runs each
Pod's container with the bubblewrap warden. So the difference is what the kubernetes back end
adds: the API calls of a start (sweep, NetworkPolicy, Pod, watch, log follow) and, for every
call, the path through the API server's port-forward (a WebSocket per connection, each byte
framed and relayed by the double) instead of the warden's relay into the sandbox's namespace.

Measured in the same run, in alternating order:

- start: ``open_sandbox`` entered until the first tool call returned (``--starts`` of each);
- call latency: sequential ``get_all_tasks`` calls through the proxy and the sandbox's mTLS
  session, in 0.5 s slices that alternate between two open sandboxes, for ``--seconds`` each.

And the warm pool leg (agent-sandbox, ``--pool-starts`` of each, alternating): a cold start
(a Sandbox: its Pod created for it) against a claim on a ``--k8s-warm-pool 1`` pool whose Pod
runs already (the benchmark waits for the pool to be full before each warm start), each
measured from the workload's creation (the Sandbox, or the SandboxClaim) to its Pod running
with our label, to the first byte through the port-forward (warm: the stub's answer, then the
tool server's first TLS byte), and from ``open_sandbox`` entered to the first call returned.

Needs root and bubblewrap (the double's Pods run as uid 65534). Run:

    .venv/bin/python benchmarks/kubernetes.py --seconds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

import trio

# A script: the checkout goes on its path for the test double it borrows (tests.kubernetes).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.kubernetes.kube_double import KubeDouble, open_kube_double
from trio_sandbox.sandbox import Sandbox, SandboxConfig, open_sandbox
from trio_sandbox.warden.kubernetes._pod import LABEL_SANDBOX

BACKENDS = ("bwrap", "kubernetes")
IMAGES = {"bwrap": "host", "kubernetes": "trio-sandbox:test"}
SLICE_SECONDS = 0.5


def median(values: list[float]) -> float:
    return statistics.median(values)


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


async def one_call(sandbox: Sandbox) -> float:
    started = trio.current_time()
    result = await sandbox.call_tool("get_all_tasks", {})
    assert not result.is_error, result
    return trio.current_time() - started


async def start_once(backend: str) -> float:
    entered = trio.current_time()
    async with open_sandbox(SandboxConfig(backend=backend, image=IMAGES[backend])) as sandbox:
        await one_call(sandbox)
        return trio.current_time() - entered


def _pool_full(double: KubeDouble) -> bool:
    pools = double.objects("sandboxwarmpools")
    if not pools:
        return True  # made by the first warm start
    double.refresh_pool_status("default")
    status = double.objects("sandboxwarmpools")[0].get("status") or {}
    return bool(status.get("readyReplicas", 0) >= pools[0]["spec"]["replicas"])


async def pool_start_once(double: KubeDouble, warm: bool) -> dict[str, float]:
    """One agent-sandbox start; the phases from the store's history and the double's relay."""
    os.environ["TRIO_SANDBOX_K8S_API"] = "agent-sandbox"
    if warm:
        os.environ["TRIO_SANDBOX_K8S_WARM_POOL"] = "1"
        while not _pool_full(double):
            await double.store.changed.wait()
    else:
        os.environ.pop("TRIO_SANDBOX_K8S_WARM_POOL", None)
    seen = len(double.store.history)
    try:
        entered = trio.current_time()
        async with open_sandbox(
            SandboxConfig(backend="kubernetes", image=IMAGES["kubernetes"])
        ) as sb:
            await one_call(sb)
            total = trio.current_time() - entered
    finally:
        del os.environ["TRIO_SANDBOX_K8S_API"]
        os.environ.pop("TRIO_SANDBOX_K8S_WARM_POOL", None)
    changes = double.store.history[seen:]
    kind = "sandboxclaims" if warm else "sandboxes"
    (created,) = [
        c
        for c in changes
        if c.kind == "ADDED"
        and c.key[0] == kind
        and c.key[2].startswith("trio-sandbox-")
        and not c.key[2].startswith("trio-sandbox-pool-")
    ]
    sandbox_id = created.key[2].removeprefix("trio-sandbox-")
    ready = next(
        c
        for c in changes
        if c.key[0] == "pods"
        and (c.obj["metadata"].get("labels") or {}).get(LABEL_SANDBOX) == sandbox_id
        and c.obj.get("status", {}).get("phase") == "Running"
    )
    firsts = double.first_bytes[ready.key[2]]
    server_byte = firsts[1] if warm else firsts[0]
    return {
        "ready": ready.at - created.at,
        "first byte": firsts[0] - created.at,
        "server byte": server_byte - created.at,
        "start": total,
    }


async def pool_leg(double: KubeDouble, starts: int) -> None:
    phases: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    await pool_start_once(double, True)  # makes the pool (its own claim starts cold): not counted
    for _ in range(starts):
        for warm in (False, True):
            phases[warm].append(await pool_start_once(double, warm))
    print()
    print(f"agent-sandbox on the double: cold Sandbox vs a claim on a warm pool ({starts} starts)")
    print(f"{'median, from the workload created':34} {'cold':>11} {'warm pool':>11} {'ratio':>7}")
    for label, key in (
        ("Pod running, ours", "ready"),
        ("first byte through port-forward", "first byte"),
        ("tool server's first byte", "server byte"),
        ("open_sandbox to first call", "start"),
    ):
        cold = median([p[key] for p in phases[False]])
        hot = median([p[key] for p in phases[True]])
        print(f"{label:34} {ms(cold):>11} {ms(hot):>11} {hot / cold:6.2f}x")


async def main(seconds: float, starts: int, pool_starts: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        async with open_kube_double(Path(directory)) as double:
            os.environ["KUBECONFIG"] = str(double.kubeconfig)
            os.environ["TRIO_SANDBOX_K8S_PYTHON"] = sys.executable
            if pool_starts:
                await pool_leg(double, pool_starts)
            if not starts:
                return
            start_times: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
            for _ in range(starts):
                for backend in BACKENDS:
                    start_times[backend].append(await start_once(backend))
            latencies: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
            async with AsyncExitStack() as stack:
                sandboxes = {
                    backend: await stack.enter_async_context(
                        open_sandbox(SandboxConfig(backend=backend, image=IMAGES[backend]))
                    )
                    for backend in BACKENDS
                }
                for sandbox in sandboxes.values():
                    await one_call(sandbox)  # warm: the first call opens the session's pool
                spent = 0.0
                while spent < seconds:
                    for backend in BACKENDS:
                        deadline = trio.current_time() + SLICE_SECONDS
                        while trio.current_time() < deadline:
                            latencies[backend].append(await one_call(sandboxes[backend]))
                    spent += SLICE_SECONDS
    report(seconds, starts, start_times, latencies)


def report(
    seconds: float,
    starts: int,
    start_times: dict[str, list[float]],
    latencies: dict[str, list[float]],
) -> None:
    base, k8s = (statistics.median(start_times[b]) for b in BACKENDS)
    print(f"kubernetes back end on the API server double vs bubblewrap, same run ({starts} starts,")
    print(f"{seconds:g} s of sequential calls each)")
    print(f"{'':34} {'bwrap':>11} {'kubernetes':>11} {'ratio':>7}")
    print(f"{'start to first call (median)':34} {ms(base):>11} {ms(k8s):>11} {k8s / base:6.2f}x")
    for label, pick in (("call latency (median)", median), ("call latency (p90)", p90)):
        b, k = pick(latencies["bwrap"]), pick(latencies["kubernetes"])
        print(f"{label:34} {ms(b):>11} {ms(k):>11} {k / b:6.2f}x")
    rates = {backend: len(latencies[backend]) / seconds for backend in BACKENDS}
    print(
        f"{'calls/s (sequential)':34} {rates['bwrap']:11.0f} {rates['kubernetes']:11.0f}"
        f" {rates['kubernetes'] / rates['bwrap']:6.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="of calls per back end")
    parser.add_argument("--starts", type=int, default=3, help="sandbox starts per back end")
    parser.add_argument(
        "--pool-starts", type=int, default=3, help="agent-sandbox starts, cold and warm (0: none)"
    )
    args = parser.parse_args()
    trio.run(main, args.seconds, args.starts, args.pool_starts)
