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

from tests.kubernetes.kube_double import open_kube_double
from trio_sandbox.sandbox import Sandbox, SandboxConfig, open_sandbox

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


async def main(seconds: float, starts: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        async with open_kube_double(Path(directory)) as double:
            os.environ["KUBECONFIG"] = str(double.kubeconfig)
            os.environ["TRIO_SANDBOX_K8S_PYTHON"] = sys.executable
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
    args = parser.parse_args()
    trio.run(main, args.seconds, args.starts)
