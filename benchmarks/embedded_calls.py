"""Embedded no-op calls per second: ``Sandbox.call_tool("get_all_tasks")`` one after another on a
real sandbox (bubblewrap, the real tool server), and what one read of ``Sandbox.tools`` costs.

Uses only the public embedding API, so it runs unchanged on any revision (compare two revisions
in the same sitting, alternating: the machine's other work skews every figure):

    .venv/bin/python benchmarks/embedded_calls.py --calls 500
"""

from __future__ import annotations

import argparse
import statistics
import time

import trio

from trio_sandbox.sandbox import SandboxConfig, open_sandbox

WARM_CALLS = 10
TOOLS_READS = 10_000


async def measure(calls: int) -> None:
    async with open_sandbox(SandboxConfig(health_interval=3600.0)) as sandbox:
        for _ in range(WARM_CALLS):
            await sandbox.call_tool("get_all_tasks", {})
        times: list[float] = []
        start = time.perf_counter()
        for _ in range(calls):
            before = time.perf_counter()
            await sandbox.call_tool("get_all_tasks", {})
            times.append(time.perf_counter() - before)
        total = time.perf_counter() - start
        before = time.perf_counter()
        for _ in range(TOOLS_READS):
            _ = sandbox.tools
        read = (time.perf_counter() - before) / TOOLS_READS
    times.sort()
    print(
        f"{calls} calls: {calls / total:.0f}/s, p50 {statistics.median(times) * 1e3:.2f} ms,"
        f" p90 {times[int(calls * 0.9)] * 1e3:.2f} ms; one read of Sandbox.tools:"
        f" {read * 1e6:.2f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    trio.run(measure, args.calls)


if __name__ == "__main__":
    main()
