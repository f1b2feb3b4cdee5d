"""Sandbox lifecycle times with the real bubblewrap warden and the real tool server.

For each of ``--runs`` runs (default 5), in this order:

- warden alone: the warden started (``python -m trio_sandbox.warden wrap ... host -- python -m
  trio_sandbox.tools``) until its CA block is read - the floor every start pays;
- cold start: ``open_sandbox`` entered until the first ``tools/list`` through the proxy returned;
- respawn: the tool server killed (SIGKILL from the host) until the next ``run_command`` call
  succeeded on the new sandbox;
- teardown: leaving the ``async with`` until it returned.

Medians are printed beside the goals (cold start < 600 ms, respawn < 1 s, teardown < 300 ms)
and as ratios to the warden alone, with where the cold start's time goes (warden to CA block,
CA block to first connection attempt, to a ready session, to the first listing through the
proxy). Also ``python -c pass`` and the import time of the tool server, for scale. Run:

    .venv/bin/python benchmarks/lifecycle.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping

import trio

from trio_sandbox.sandbox import SandboxConfig, open_sandbox
from trio_sandbox.sandbox._launcher import free_loopback_port, warden_argv
from trio_sandbox.sandbox._process import serve_warden
from trio_sandbox.sandbox._streams import OutputTail
from trio_sandbox.tls import MtlsIdentity

GOALS = {"cold start": 0.600, "respawn": 1.000, "teardown": 0.300}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.0f} ms"


def tool_server_pids(marker: str) -> list[int]:
    """The tool server processes of the sandbox marked with ``marker`` (seen from the host)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as source:
                environ = source.read()
            with open(f"/proc/{entry}/cmdline", "rb") as source:
                cmdline = source.read()
        except OSError:
            continue
        if marker.encode() in environ and b"trio_sandbox.tools" in cmdline:
            found.append(int(entry))
    return found


async def warden_alone(config: SandboxConfig) -> float:
    identity = MtlsIdentity.generate_client()
    argv = warden_argv(config, free_loopback_port(), identity.ca_cert_pem())
    async with trio.open_nursery() as nursery:
        started = trio.current_time()
        await nursery.start(
            lambda task_status: serve_warden(
                argv,
                env=os.environ,
                ca_timeout=60,
                stop_grace=10,
                stderr_tail=OutputTail(),
                task_status=task_status,
            )
        )
        elapsed = trio.current_time() - started
        nursery.cancel_scope.cancel()
    return elapsed


async def one_run(figures: dict[str, list[float]]) -> None:
    marker = f"bench-{uuid.uuid4().hex}"
    config = SandboxConfig(env={"TRIO_SANDBOX_BENCH_MARK": marker})
    figures["warden alone"].append(await warden_alone(config))

    entered = trio.current_time()
    async with open_sandbox(config) as sandbox:
        await sandbox.list_tools()
        listed = trio.current_time()
        figures["cold start"].append(listed - entered)
        timeline: Mapping[str, float] = sandbox.start_timeline
        figures["  launcher setup (identity, argv)"].append(timeline["warden_started"] - entered)
        figures["  warden to CA block"].append(timeline["ca_block"] - timeline["warden_started"])
        figures["  CA block to first attempt"].append(
            timeline["first_attempt"] - timeline["ca_block"]
        )
        figures["  first attempt to session"].append(timeline["ready"] - timeline["first_attempt"])
        figures["  session to first listing (proxy)"].append(listed - timeline["ready"])

        pids = tool_server_pids(marker)
        assert len(pids) == 1, pids
        killed = trio.current_time()
        os.kill(pids[0], signal.SIGKILL)
        while True:
            try:
                result = await sandbox.call_tool("run_command", {"command": "echo back"})
            except Exception:  # the sandbox is going down: the next call waits for the new one
                continue
            if "back" in result.text_content:
                break
        figures["respawn"].append(trio.current_time() - killed)
        assert sandbox.health.generation == 2
        leaving = trio.current_time()
    figures["teardown"].append(trio.current_time() - leaving)


def python_startup() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def tool_server_import() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import trio_sandbox.tools._main"], check=True)
    return time.perf_counter() - started


async def main(runs: int) -> None:
    names = [
        "warden alone",
        "cold start",
        "  launcher setup (identity, argv)",
        "  warden to CA block",
        "  CA block to first attempt",
        "  first attempt to session",
        "  session to first listing (proxy)",
        "respawn",
        "teardown",
    ]
    figures: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(runs):
        await one_run(figures)
    startup = statistics.median(python_startup() for _ in range(3))
    imports = statistics.median(tool_server_import() for _ in range(3))
    baseline = statistics.median(figures["warden alone"])
    print(f"sandbox lifecycle, median of {runs} runs (bubblewrap warden, real tool server)")
    for name in names:
        median = statistics.median(figures[name])
        line = f"{name:38} {ms(median)}"
        if not name.startswith(" "):
            line += f"   x{median / baseline:4.2f} of warden alone"
        if name in GOALS:
            verdict = "meets" if median < GOALS[name] else "MISSES"
            line += f"   goal < {GOALS[name] * 1000:.0f} ms: {verdict}"
        print(line)
    print(f"{'python -c pass':38} {ms(startup)}")
    print(f"{'python -c import trio_sandbox.tools._main':38} {ms(imports)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    trio.run(main, parser.parse_args().runs)
