"""Sandbox lifecycle times with the real bubblewrap warden and the real tool server, for root
and for an ordinary user side by side.

Each kind of user runs this same script as a child (``--child``), so that both measure the same
code with the same interpreter: as root with the tests' interpreter (the figures of earlier
runs), and — when run as root on a machine prepared by ``.ci/install`` — as root and as the
ordinary user ``trio-sandbox-test`` with ``.venv-user``'s interpreter (Debian's python3). For each
of ``--runs`` runs:

- warden alone: the warden started until its CA block is read - the floor every start pays;
- cold start: ``open_sandbox`` entered until the first ``tools/list`` through the proxy returned;
- no-op call: a cheap tool call (``get_all_tasks``) through the proxy and the published port;
- respawn: the tool server killed (SIGKILL from the host) until the next call succeeded;
- teardown: leaving the ``async with`` until it returned.

Goals: cold start < 600 ms, respawn < 1 s, teardown < 300 ms; the ordinary user's cold start no
more than 100 ms above root's and its no-op call no more than 10 % slower (same interpreter).

    .venv/bin/python benchmarks/lifecycle.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import trio

from trio_sandbox.sandbox import SandboxConfig, open_sandbox
from trio_sandbox.sandbox._launcher import free_loopback_port, warden_argv
from trio_sandbox.sandbox._process import serve_warden
from trio_sandbox.sandbox._streams import OutputTail
from trio_sandbox.tls import MtlsIdentity

GOALS = {"cold start": 0.600, "respawn": 1.000, "teardown": 0.300}
NAMES = [
    "warden alone",
    "cold start",
    "  launcher setup (identity, argv)",
    "  warden to CA block",
    "  CA block to first attempt",
    "  first attempt to session",
    "  session to first listing (proxy)",
    "no-op call",
    "respawn",
    "teardown",
]
NOOP_CALLS = 50
REPO = Path(__file__).resolve().parents[1]
TEST_USER = "trio-sandbox-test"
USER_PYTHON = REPO / ".venv-user" / "bin" / "python"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


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
                argv = source.read().split(b"\0")
        except OSError:
            continue
        if marker.encode() in environ and argv[1:3] == [b"-m", b"trio_sandbox.tools"]:
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

        calls = []
        for _ in range(NOOP_CALLS):
            began = trio.current_time()
            await sandbox.call_tool("get_all_tasks", {})
            calls.append(trio.current_time() - began)
        figures["no-op call"].append(statistics.median(calls))

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


async def measure(runs: int) -> dict[str, float]:
    figures: dict[str, list[float]] = {name: [] for name in NAMES}
    for _ in range(runs):
        await one_run(figures)
    return {name: statistics.median(values) for name, values in figures.items()}


def child(python: str, runs: int, user: str | None) -> dict[str, float]:
    """This script's ``--child`` mode, as ``user`` (None: as this process's user)."""
    argv = [python, str(Path(__file__).resolve()), "--child", "--runs", str(runs)]
    env = dict(os.environ)
    if user is not None:
        entry = pwd.getpwnam(user)
        argv = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups"]
        argv += ["--", python, str(Path(__file__).resolve()), "--child", "--runs", str(runs)]
        env = {"PATH": "/usr/bin:/bin", "HOME": entry.pw_dir, "LANG": "C.UTF-8"}
    done = subprocess.run(argv, capture_output=True, check=True, env=env, cwd="/")
    figures: dict[str, float] = json.loads(done.stdout.decode().splitlines()[-1])
    return figures


def python_startup(python: str) -> float:
    started = time.perf_counter()
    subprocess.run([python, "-c", "pass"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(trio.run(measure, args.runs)))
        return
    columns: dict[str, dict[str, float]] = {}
    me = "root" if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
    columns[f"{me}, this python"] = child(sys.executable, args.runs, None)
    both = os.geteuid() == 0 and USER_PYTHON.exists()
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        both = False
    if both:
        columns["root, .venv-user"] = child(str(USER_PYTHON), args.runs, None)
        columns["ordinary user, .venv-user"] = child(str(USER_PYTHON), args.runs, TEST_USER)
    print(f"sandbox lifecycle, median of {args.runs} runs (bubblewrap warden, real tool server)")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print(f"{'':38}" + "".join(f"{name:>28}" for name in columns))
    for name in NAMES:
        cells = "".join(f"{ms(figures[name]):>28}" for figures in columns.values())
        line = f"{name:38}{cells}"
        if name in GOALS:
            line += f"   goal < {GOALS[name] * 1000:.0f} ms"
        print(line)
    print(f"{'python -c pass':38}{ms(python_startup(sys.executable)):>28}")
    if both:
        root, user = columns["root, .venv-user"], columns["ordinary user, .venv-user"]
        extra = (user["cold start"] - root["cold start"]) * 1000
        ratio = user["no-op call"] / root["no-op call"]
        print(
            f"ordinary user vs root (same interpreter): cold start {extra:+.0f} ms (goal <= +100:"
            f" {'met' if extra <= 100 else 'NOT met'}), no-op call x{ratio:.2f} (goal <= 1.10:"
            f" {'met' if ratio <= 1.10 else 'NOT met'})"
        )
    for label, figures in columns.items():
        verdicts = [
            f"{name} {'met' if figures[name] < goal else 'NOT met'}" for name, goal in GOALS.items()
        ]
        print(f"{label}: " + ", ".join(verdicts))


if __name__ == "__main__":
    main()
