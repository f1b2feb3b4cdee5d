"""Cost of secret redaction on ordinary tool output, beside simple baselines in the same run.

First the cold start: loading the rules and making a redactor in fresh processes, the shipped
precomputed rule set beside the same rules translated from gitleaks.toml at load (the baseline),
and the first 1 MiB scan (which compiles the rules it meets) beside the second. Then it measures
``SecretRedactor.redact_text`` on 1 KiB, 64 KiB and 1 MiB of generated ordinary output (git log,
pip and npm logs, ls -l, JSON, sha256sums, docker digests, base64 in build logs, test output; no
secrets) and on 1 MiB with 20 fake secrets in it; as baselines over the same text, a
``str.replace`` of one known value and one simple regex substitution. Then the longest pause of
the Trio event loop, seen by a task that ticks while a 1 MiB text is redacted with
``redact_text_async`` (and, for contrast, with the blocking ``redact_text``).

Then the cost a tool call pays for redaction: calls through a real proxy (``serve_proxy``, an
in-process upstream that returns the text, our client over the in-memory transport) with the
upstream's redaction on and off, in the same run; the difference is redaction's share.

Last, other callers beside a large result: through one such proxy, a client makes no-op calls
alone, then while another client fetches a 1 MiB result again and again (legs alternate):
their median and p99, the event loop's longest pause and the longest full garbage collection
in the second leg; the same with the upstream's redaction off (the rest of a large result's way).

Goals: the rule set loaded in <= 30 ms; 1 KiB in <= 0.5 ms; >= 150 MB/s for 1 MiB; <= 1 ms
added to a 64 KiB tool call; no event-loop pause over 20 ms while 1 MiB is scanned; the no-op
calls' p99 beside the 1 MiB fetches <= 3x their median alone.

    .venv/bin/python benchmarks/redaction.py --seconds 2
    .venv/bin/python benchmarks/redaction.py --false-positives 16    # placeholders: should be 0
    .venv/bin/python benchmarks/redaction.py --cold-start 8     # open_sandbox, redact on vs off
    .venv/bin/python benchmarks/redaction.py --known-secrets 10000  # no-op call, 0 vs N known

``--known-secrets N``: a no-op call through a proxy whose redactor knows N secrets, each the
result of a ``generate_password`` call made through that proxy, beside the same call through a
proxy that knows none, in the same run (legs alternate); also the no-op call made just after a
new password (the redactor takes the value in), and the ``generate_password`` calls' own time,
first ones against last ones. Goal: the same per-call time +-10 % with 10,000 known secrets.

``--compare`` also times the alternatives that were considered, when they are importable (they
are not dependencies: install them in a scratch environment): detect-secrets (its default
plugins, line by line: findings on the same ordinary text and on the fake secrets),
pyahocorasick (the keyword prefilter) and google-re2 (every rule over the whole text).
"""

from __future__ import annotations

import argparse
import base64
import gc
import importlib
import json
import random
import re
import statistics
import time
import uuid
from collections.abc import Callable, Generator
from functools import partial
from pathlib import Path
from typing import Any

import trio

from trio_sandbox.redact import PLACEHOLDER, SecretRedactor, default_rules
from trio_sandbox.redact._detect import Detector
from trio_sandbox.redact._prefilter import lower_aligned
from trio_sandbox.redact._redactor import _run

WORDS = (
    "the",
    "build",
    "for",
    "module",
    "parser",
    "config",
    "server",
    "client",
    "request",
    "response",
    "value",
    "files",
    "update",
    "install",
    "package",
    "version",
    "error",
    "warning",
    "info",
    "debug",
    "test",
    "tests",
    "passed",
    "failed",
    "collected",
    "running",
    "started",
    "finished",
    "download",
    "cache",
    "layer",
    "image",
    "container",
    "network",
    "user",
    "project",
    "source",
    "target",
    "output",
    "input",
    "default",
    "option",
    "settings",
    "handler",
    "context",
)


def _hex(rng: random.Random, count: int) -> str:
    return rng.randbytes(count // 2).hex()


def _chunk(rng: random.Random) -> str:
    word = rng.choice
    kind = rng.randrange(10)
    if kind == 0:
        message = " ".join(word(WORDS) for _ in range(8)).capitalize()
        return (
            f"commit {_hex(rng, 40)}\nAuthor: Dev Person <dev{rng.randrange(99)}@example.com>\n"
            f"Date:   Tue Nov {rng.randrange(1, 28)} 10:{rng.randrange(60):02d}:00 2026 +0100\n\n"
            f"    {message}\n\n"
        )
    if kind == 1:
        return "".join(
            f"-rw-r--r--  1 dev dev {rng.randrange(100, 99999):6d} Nov 26 "
            f"10:{rng.randrange(60):02d} {word(WORDS)}_{rng.randrange(100)}."
            f"{word(['py', 'txt', 'json', 'md'])}\n"
            for _ in range(5)
        )
    if kind == 2:
        name = word(WORDS)
        return (
            f"Collecting {name}-lib>=1.{rng.randrange(20)}\n  Downloading {name}_lib-1.2.3-py3-"
            f"none-any.whl ({rng.randrange(10, 900)} kB)\n     {'━' * 40} 900.0/900.0 kB 3.1 MB/s"
            f" eta 0:00:00\nRequirement already satisfied: {word(WORDS)}>=2.0 in ./.venv/lib/"
            "python3.11/site-packages\n"
        )
    if kind == 3:
        return (
            f"npm WARN deprecated {word(WORDS)}@{rng.randrange(9)}.0.0: no longer supported\n"
            f"added {rng.randrange(900)} packages, and audited {rng.randrange(900)} packages\n"
        )
    if kind == 4:
        document = {
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "name": f"{word(WORDS)} {word(WORDS)}",
            "status": word(["ok", "pending"]),
            "created_at": "2026-11-26T10:00:00Z",
            "count": rng.randrange(1000),
            "tags": [word(WORDS) for _ in range(3)],
            "owner": {"id": str(uuid.UUID(int=rng.getrandbits(128))), "login": word(WORDS)},
        }
        return json.dumps(document, indent=2) + "\n"
    if kind == 5:
        return f"{_hex(rng, 64)}  dist/{word(WORDS)}-1.{rng.randrange(9)}.tar.gz\n"
    if kind == 6:
        return (
            f"#{rng.randrange(20)} sha256:{_hex(rng, 64)} {rng.randrange(99)}MB "
            f"1.{rng.randrange(9)}s\n"
            f"docker.io/library/python@sha256:{_hex(rng, 64)}\n"
        )
    if kind == 7:
        blob = base64.b64encode(rng.randbytes(rng.randrange(30, 90))).decode()
        return f"[build] embedding {word(WORDS)}.png as data:image/png;base64,{blob}\n"
    if kind == 8:
        return f"tests/test_{word(WORDS)}.py::test_{word(WORDS)}_{word(WORDS)} PASSED [ 42%]\n"
    words = " ".join(word(WORDS) for _ in range(10))
    return f"INFO 2026-11-26 10:{rng.randrange(60):02d}:00 {word(WORDS)}: {words}\n"


def ordinary_output(size: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    parts: list[str] = []
    length = 0
    while length < size:
        parts.append(_chunk(rng))
        length += len(parts[-1])
    return "".join(parts)[:size]


def fake_secrets(rng: random.Random) -> list[str]:
    def pick(alphabet: str, count: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(count))

    alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    pem_body = base64.b64encode(rng.randbytes(600)).decode()
    pem_lines = "\n".join(pem_body[i : i + 64] for i in range(0, len(pem_body), 64))
    return [
        "ghp_" + pick(alnum, 36),
        "glpat-" + pick(alnum, 20),
        "AKIA" + pick("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
        "xoxb-" + pick("0123456789", 12) + "-" + pick("0123456789", 12) + "-" + pick(alnum, 24),
        "sk_live_" + pick(alnum, 40),
        "sk-ant-api03-" + pick(alnum, 93) + "AA",
        f"-----BEGIN PRIVATE KEY-----\n{pem_lines}\n-----END PRIVATE KEY-----",
        "password=" + pick(alnum, 18),
    ]


def with_secrets(text: str, count: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    lines = text.split("\n")
    for _ in range(count):
        lines.insert(rng.randrange(len(lines)), f"export VALUE={rng.choice(fake_secrets(rng))}")
    return "\n".join(lines)


def timed(function: Callable[[], object], seconds: float) -> float:
    """Median seconds per call over about `seconds` of calls (at least 5)."""
    samples: list[float] = []
    end = time.perf_counter() + seconds
    while len(samples) < 5 or time.perf_counter() < end:
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


async def longest_pause(scan: Callable[[], Any], *, blocking: bool) -> float:
    """The longest gap between two turns of a ticking task while `scan` runs."""
    longest = 0.0
    done = False

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await trio.lowlevel.checkpoint()
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.sleep(0.01)
        if blocking:
            scan()
        else:
            await scan()
        done = True
    return longest


def row(name: str, seconds: float, size: int, note: str = "") -> None:
    rate = size / seconds / 1e6
    print(f"{name:46} {seconds * 1e3:9.3f} ms {rate:8.1f} MB/s  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--compare", action="store_true", help="time the alternatives too")
    parser.add_argument(
        "--false-positives",
        type=int,
        default=0,
        metavar="MIB",
        help="only count placeholders in MIB MiB of ordinary output (one seed per MiB)",
    )
    parser.add_argument(
        "--cold-start",
        type=int,
        default=0,
        metavar="N",
        help="only time open_sandbox to ready with redaction on and off, N fresh processes each",
    )
    parser.add_argument(
        "--known-secrets",
        type=int,
        default=0,
        metavar="N",
        help="only time a no-op call through the proxy with 0 and with N known secrets",
    )
    args = parser.parse_args()
    if args.known_secrets:
        trio.run(known_secrets, args.known_secrets, args.seconds)
        return
    if args.cold_start:
        cold_start(args.cold_start)
        return
    if args.false_positives:
        count_false_positives(args.false_positives)
        return
    seconds = args.seconds

    rules_cold_start(5)
    redactor = SecretRedactor(default_rules())
    print(f"{'what':46} {'per call':>12} {'rate':>13}")
    simple_regex = re.compile(r"ghp_[0-9A-Za-z]{36}")
    megabyte = ordinary_output(1 << 20)
    for size, goal in (
        (1 << 10, "goal <= 0.5 ms"),
        (64 << 10, ""),
        (1 << 20, "goal >= 150 MB/s"),
    ):
        text = ordinary_output(size)
        assert redactor.redact_text(text) == text, "ordinary output changed"
        label = f"{size >> 10} KiB" if size < 1 << 20 else "1 MiB"
        row(
            f"redact_text, ordinary output, {label}",
            timed(partial(redactor.redact_text, text), seconds),
            size,
            goal,
        )
        row(
            f"  baseline: one str.replace, {label}",
            timed(partial(text.replace, "hunter2-correct-horse", "x"), seconds),
            size,
        )
        row(
            f"  baseline: one regex sub, {label}",
            timed(partial(simple_regex.sub, "x", text), seconds),
            size,
        )
    secret_text = with_secrets(megabyte, 20)
    redacted = redactor.redact_text(secret_text)
    found = len(PLACEHOLDER.findall(redacted))
    row(
        "redact_text, 1 MiB with 20 secrets",
        timed(lambda: redactor.redact_text(secret_text), seconds),
        len(secret_text),
        f"{found} placeholders",
    )
    known = SecretRedactor()
    for index in range(50):
        known.add_known_secret(f"known-secret-value-{index:03d}-{'x' * 8}", f"env:VAR_{index}")
    row(
        "redact_text, 1 MiB, 50 known values",
        timed(lambda: known.redact_text(megabyte), seconds),
        len(megabyte),
    )
    row(
        "restore_text, 1 MiB with 20 placeholders",
        timed(lambda: redactor.restore_text(redacted), seconds),
        len(redacted),
    )

    async_call = partial(trio.run, partial(redactor.redact_text_async, megabyte))
    row("redact_text_async, 1 MiB (alone in trio.run)", timed(async_call, seconds), len(megabyte))
    pauses = [
        trio.run(
            partial(longest_pause, partial(redactor.redact_text_async, megabyte), blocking=False)
        )
        for _ in range(5)
    ]
    blocking = trio.run(
        partial(longest_pause, partial(redactor.redact_text, megabyte), blocking=True)
    )
    print(
        f"longest event-loop pause, redact_text_async(1 MiB): {max(pauses) * 1e3:.1f} ms"
        " (worst of 5; goal <= 20 ms)"
    )
    print(f"  for contrast, blocking redact_text(1 MiB) in the loop: {blocking * 1e3:.1f} ms")
    print()
    print(f"{'a tool call through the proxy':46} {'redact on':>12} {'redact off':>12} {'cost':>10}")
    for size in (1 << 10, 64 << 10, 1 << 20):
        on, off = trio.run(proxied_calls, ordinary_output(size), seconds)
        label = f"{size >> 10} KiB" if size < 1 << 20 else "1 MiB"
        print(
            f"{'output of ' + label:46} {on * 1e3:9.3f} ms {off * 1e3:9.3f} ms"
            f" {(on - off) * 1e3:7.3f} ms" + ("  goal <= 1 ms" if size == 64 << 10 else "")
        )
    print()
    report_concurrent(seconds)
    if args.compare:
        compare(megabyte, seconds)


async def proxied_calls(text: str, seconds: float) -> tuple[float, float]:
    """Median seconds per call of a tool returning ``text``, through a proxy whose upstream
    redacts, and through one whose upstream does not (legs alternate)."""
    from trio_sandbox.mcp import Implementation, McpServer, memory_transport, open_mcp_client
    from trio_sandbox.proxy import HttpFace, InProcessUpstream, serve_proxy

    server = McpServer(Implementation("echo", "1"))

    @server.tool("emit", input_schema={"type": "object"})
    async def emit(arguments: dict[str, Any], ctx: Any) -> str:
        return text

    times: dict[bool, list[float]] = {True: [], False: []}
    async with trio.open_nursery() as nursery:
        clients = {}
        for redact in (True, False):
            upstream = InProcessUpstream("echo", server, prefix="", redact=redact)
            proxy = await nursery.start(partial(serve_proxy, [upstream], HttpFace(plain=True)))
            client_cm = open_mcp_client(memory_transport(proxy.server.mcp))
            clients[redact] = await nursery.start(_hold_client, client_cm)
        end = time.perf_counter() + 2 * seconds
        while len(times[False]) < 5 or time.perf_counter() < end:
            for redact in (True, False):
                started = time.perf_counter()
                await clients[redact].call_tool("emit", {})
                times[redact].append(time.perf_counter() - started)
        nursery.cancel_scope.cancel()
    return statistics.median(times[True]), statistics.median(times[False])


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def concurrent_calls(text: str, seconds: float, redact: bool) -> dict[str, Any]:
    """A no-op call's times through a real proxy, alone and while another client fetches
    ``text`` again and again (legs alternate, ``seconds`` each, twice), and the longest pause
    of the event loop during the second kind."""
    from trio_sandbox.mcp import Implementation, McpServer, memory_transport, open_mcp_client
    from trio_sandbox.proxy import HttpFace, InProcessUpstream, serve_proxy

    server = McpServer(Implementation("echo", "1"))
    calls = 0

    @server.tool("emit", input_schema={"type": "object"})
    async def emit(arguments: dict[str, Any], ctx: Any) -> str:
        return text

    @server.tool("noop", input_schema={"type": "object"})
    async def noop(arguments: dict[str, Any], ctx: Any) -> str:
        nonlocal calls
        calls += 1  # a text that differs per call: scanned, never taken from the clean memo
        return f"exit status 0 (call {calls})"

    gc.freeze()  # as the CLI does before it serves: what is loaded by now is never garbage
    alone: list[float] = []
    beside: list[float] = []
    big_calls = 0
    longest = 0.0
    collections: list[float] = []  # full (generation 2) garbage collections, beside
    collecting = 0.0

    def collected(phase: str, info: dict[str, int]) -> None:
        nonlocal collecting
        if info["generation"] == 2:
            if phase == "start":
                collecting = time.perf_counter()
            else:
                collections.append(time.perf_counter() - collecting)

    async with trio.open_nursery() as nursery:
        upstream = InProcessUpstream("echo", server, prefix="", redact=redact)
        proxy = await nursery.start(partial(serve_proxy, [upstream], HttpFace(plain=True)))
        small = await nursery.start(
            _hold_client, open_mcp_client(memory_transport(proxy.server.mcp))
        )
        big = await nursery.start(_hold_client, open_mcp_client(memory_transport(proxy.server.mcp)))
        await big.call_tool("emit", {})  # the redactor made, the rules this text meets compiled

        async def fetch_again_and_again() -> None:
            nonlocal big_calls
            while True:
                await big.call_tool("emit", {})
                big_calls += 1

        async def tick() -> None:
            nonlocal longest
            last = time.perf_counter()
            while True:
                await trio.lowlevel.checkpoint()
                now = time.perf_counter()
                longest = max(longest, now - last)
                last = now

        async def small_calls(samples: list[float]) -> None:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                started = time.perf_counter()
                await small.call_tool("noop", {})
                samples.append(time.perf_counter() - started)

        for _ in range(2):
            await small_calls(alone)
            async with trio.open_nursery() as load:
                load.start_soon(fetch_again_and_again)
                load.start_soon(tick)
                await trio.sleep(0.05)
                gc.callbacks.append(collected)
                try:
                    await small_calls(beside)
                finally:
                    gc.callbacks.remove(collected)
                load.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
    return {
        "alone": alone,
        "beside": beside,
        "big_calls": big_calls,
        "longest": longest,
        "collections": collections,
    }


def report_concurrent(seconds: float) -> None:
    """Both with the upstream's redaction on, then off (the rest of a 1 MiB result's way)."""
    text = ordinary_output(1 << 20)
    print(
        f"{'a no-op call, another client fetching 1 MiB':46} {'median':>9} {'p99':>9}"
        f" {'p99/alone median':>17} {'p99/median':>11}"
    )
    for redact in (True, False):
        found = trio.run(concurrent_calls, text, seconds, redact)
        alone = statistics.median(found["alone"])
        label = f"redaction {'on' if redact else 'off'}"
        for leg in ("alone", "beside"):
            samples = found[leg]
            median = statistics.median(samples)
            p99 = percentile(samples, 0.99)
            print(
                f"{'  ' + label + ', ' + leg:46} {median * 1e3:6.3f} ms {p99 * 1e3:6.3f} ms"
                f" {p99 / alone:17.2f} {p99 / median:11.2f}"
                + ("  (goal: p99/alone median <= 3)" if leg == "beside" and redact else "")
            )
        collections = found["collections"]
        print(
            f"    {len(found['beside'])} no-op calls beside {found['big_calls']} of 1 MiB;"
            f" longest event-loop pause {found['longest'] * 1e3:.1f} ms"
            + (" (goal <= 20 ms)" if redact else "")
            + f"; {len(collections)} full garbage collections, longest"
            f" {max(collections, default=0.0) * 1e3:.1f} ms"
        )


async def known_secrets(count: int, seconds: float) -> None:
    """A no-op call's time with no known secret and with ``count`` generated passwords known."""
    from trio_sandbox.mcp import Implementation, McpServer, memory_transport, open_mcp_client
    from trio_sandbox.proxy import HttpFace, InProcessUpstream, OutputGuard, serve_proxy
    from trio_sandbox.tools import generate_password

    server = McpServer(Implementation("tools", "1"))
    calls = 0

    @server.tool("noop", input_schema={"type": "object"})
    async def noop(arguments: dict[str, Any], ctx: Any) -> str:
        nonlocal calls
        calls += 1  # a text that differs per call: scanned, never taken from the clean memo
        return f"exit status 0 (call {calls})"

    @server.tool("generate_password", input_schema={"type": "object"})
    async def password(arguments: dict[str, Any], ctx: Any) -> str:
        return generate_password()

    async def timed_call(client: Any, tool: str) -> float:
        started = time.perf_counter()
        result = await client.call_tool(tool, {})
        elapsed = time.perf_counter() - started
        assert not result.is_error, result
        return elapsed

    guards = {known: OutputGuard() for known in (0, count)}
    async with trio.open_nursery() as nursery:
        clients = {}
        for known, guard in guards.items():
            upstream = InProcessUpstream("tools", server, prefix="")
            proxy = await nursery.start(
                partial(serve_proxy, [upstream], HttpFace(plain=True), guard=guard)
            )
            client_cm = open_mcp_client(memory_transport(proxy.server.mcp))
            clients[known] = await nursery.start(_hold_client, client_cm)
        started = time.perf_counter()
        made = [await timed_call(clients[count], "generate_password") for _ in range(count)]
        made_in = time.perf_counter() - started
        head = statistics.median(made[:500]) * 1e3
        tail = statistics.median(made[-500:]) * 1e3
        print(
            f"{count} generate_password calls through the proxy: {made_in:.1f} s; per call,"
            f" first 500 {head:.3f} ms, last 500 {tail:.3f} ms"
        )
        times: dict[int, list[float]] = {0: [], count: []}
        after_new: dict[int, list[float]] = {0: [], count: []}
        end = time.perf_counter() + 2 * seconds
        while len(times[0]) < 20 or time.perf_counter() < end:
            for known in (0, count):
                times[known].append(await timed_call(clients[known], "noop"))
        end = time.perf_counter() + 2 * seconds
        while len(after_new[0]) < 20 or time.perf_counter() < end:
            for known in (0, count):
                await timed_call(clients[known], "generate_password")
                after_new[known].append(await timed_call(clients[known], "noop"))
        nursery.cancel_scope.cancel()
    print(f"{'a no-op call through the proxy':46} {'0 known':>12} {f'{count} known':>14} ratio")
    for label, samples in (("steady", times), ("just after a new password", after_new)):
        none = statistics.median(samples[0])
        many = statistics.median(samples[count])
        print(
            f"{label:46} {none * 1e3:9.3f} ms {many * 1e3:11.3f} ms {many / none:6.3f}"
            f"  ({len(samples[0])} calls each; goal 0.9-1.1)"
        )


async def _hold_client(client_cm: Any, *, task_status: Any) -> None:
    async with client_cm as client:
        task_status.started(client)
        await trio.sleep_forever()


def count_false_positives(mebibytes: int) -> None:
    redactor = SecretRedactor()
    total = 0
    for seed in range(mebibytes):
        redacted = redactor.redact_text(ordinary_output(1 << 20, seed))
        for match in PLACEHOLDER.finditer(redacted):
            total += 1
            print(f"seed {seed}: {match.group(1)} at {match.start()}")
    print(f"false positives in {mebibytes} MiB of ordinary output: {total}")


def _run_steps(steps: Callable[[str], Generator[None, None, Any]], text: str) -> Any:
    return _run(steps(text))


def compare(text: str, seconds: float) -> None:
    """The alternatives, each where it would stand in for a part of the engine."""
    print("\nalternatives (optional imports):")
    redactor = SecretRedactor()
    detector = redactor._detector
    fallback = Detector.build(detector.rules, pure_python=True)
    for label, engine in (
        (f"ours: literal prefilter ({type(detector.literals).__name__})", detector),
        (f"ours: its fallback ({type(fallback.literals).__name__}, re)", fallback),
    ):
        search = partial(_run_steps, engine.literal_starts, text)
        row(label, timed(search, seconds), len(text))
    keywords = detector.literals.strings
    try:
        ahocorasick: Any = importlib.import_module("ahocorasick")
    except ImportError:
        print("pyahocorasick not importable")
    else:
        automaton = ahocorasick.Automaton()
        for keyword in keywords:
            automaton.add_word(keyword, keyword)
        automaton.make_automaton()
        row(
            "pyahocorasick: same literals, all hits",
            timed(lambda: list(automaton.iter(lower_aligned(text))), seconds),
            len(text),
        )
    try:
        re2: Any = importlib.import_module("re2")
    except ImportError:
        print("google-re2 not importable")
    else:
        import tomllib

        data = (Path(__file__).parent.parent / "trio_sandbox/redact/gitleaks.toml").read_bytes()
        patterns = []
        for rule in tomllib.loads(data.decode())["rules"]:
            if "regex" in rule and "path" not in rule:
                patterns.append(re2.compile(rule["regex"].encode()))
        encoded = text.encode()
        options = re2.Options()
        options.case_sensitive = False
        literal_set = re2.Set.SearchSet(options)
        for keyword in keywords:
            literal_set.Add(re2.escape(keyword))
        literal_set.Compile()
        row(
            "google-re2 Set: which literals occur (no offsets)",
            timed(partial(literal_set.Match, encoded), seconds),
            len(text),
        )

        def all_rules() -> None:
            for pattern in patterns:
                for _ in pattern.finditer(encoded):
                    pass

        row(
            f"google-re2: all {len(patterns)} rules, whole text, bytes",
            timed(all_rules, seconds),
            len(text),
        )
    try:
        scan: Any = importlib.import_module("detect_secrets.core.scan")
        settings: Any = importlib.import_module("detect_secrets.settings")
    except ImportError:
        print("detect-secrets not importable")
        return
    lines = text.splitlines()
    with settings.default_settings():

        def detect_secrets_scan(chunk: list[str]) -> list[Any]:
            return [secret for line in chunk for secret in scan.scan_line(line)]

        sample = lines[: len(lines) // 16]
        per_call = timed(lambda: detect_secrets_scan(sample), seconds)
        row(
            "detect-secrets: default plugins, per line",
            per_call,
            sum(map(len, sample)) + len(sample),
        )
        flagged = [line for line in lines if detect_secrets_scan([line])]
        kinds = sorted({secret.type for secret in detect_secrets_scan(flagged)})
        ours = len(PLACEHOLDER.findall(redactor.redact_text(text)))
        print(
            f"false positives on 1 MiB of ordinary output ({len(lines)} lines):"
            f" ours {ours} spans, detect-secrets {len(flagged)} lines ({', '.join(kinds)})"
        )
        secrets = fake_secrets(random.Random(3))
        missed = [s[:12] for s in secrets if not detect_secrets_scan(s.splitlines())]
        ours_missed = [s[:12] for s in secrets if s in redactor.redact_text(s)]
        print(
            f"fake secrets missed (of {len(secrets)}): ours {ours_missed}, detect-secrets {missed}"
        )


RULES_COLD_START = """
import sys, time
import attrs, trio  # a proxy has these already
sys.path.insert(0, {benchmarks!r})
from redaction import ordinary_output
text = ordinary_output(1 << 20)
started = time.perf_counter()
from trio_sandbox.redact import SecretRedactor
from trio_sandbox.redact._rules import _OUR_ALLOWLISTS, _OUR_RULES, default_rules, load_rules
if {from_toml}:
    import importlib.resources
    toml = importlib.resources.files("trio_sandbox.redact").joinpath("gitleaks.toml").read_text()
    rules = load_rules(toml + _OUR_RULES, extra_allowlists=_OUR_ALLOWLISTS)
else:
    rules = default_rules()
redactor = SecretRedactor(rules)
loaded = time.perf_counter()
redactor.redact_text(text)
first = time.perf_counter()
redactor.redact_text(text)
print(loaded - started, first - loaded, time.perf_counter() - first)
"""


def rules_cold_start(runs: int) -> None:
    """Loading the rules and making a redactor in fresh processes (trio imported first, as in
    a proxy): the shipped, precomputed rule set, and for a baseline the same rules translated
    and analysed from gitleaks.toml at load (as before); then the first 1 MiB scan, which
    compiles the rules it meets, against the second. Runs alternate."""
    import subprocess
    import sys

    times: dict[bool, list[tuple[float, ...]]] = {True: [], False: []}
    for _ in range(runs):
        for from_toml in (False, True):
            code = RULES_COLD_START.format(
                benchmarks=str(Path(__file__).parent), from_toml=from_toml
            )
            done = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            times[from_toml].append(tuple(float(value) for value in done.stdout.split()))
    print(f"rule set loaded and compiled once per process (fresh processes, median of {runs}):")
    for from_toml, label in (
        (False, "precomputed (shipped)"),
        (True, "baseline: from gitleaks.toml"),
    ):
        load, first, second = (statistics.median(t[i] for t in times[from_toml]) for i in range(3))
        goal = "  goal <= 30 ms" if not from_toml else ""
        print(
            f"  {label:44} {load * 1e3:7.1f} ms; first 1 MiB scan {first * 1e3:5.1f} ms,"
            f" second {second * 1e3:5.1f} ms{goal}"
        )


COLD_START = """
import time, trio
from trio_sandbox.sandbox import SandboxConfig, open_sandbox
async def main():
    start = time.perf_counter()
    async with open_sandbox(SandboxConfig(redact={redact})) as sandbox:
        ready = time.perf_counter()
        await sandbox.call_tool("run_command", {{"command": "true"}})
        print(ready - start, time.perf_counter() - ready)
trio.run(main)
"""


def cold_start(runs: int) -> None:
    """``open_sandbox`` entered to ready, and the first call, in fresh processes (the rules
    compile beside the sandbox's boot), with redaction on and off, alternating."""
    import subprocess
    import sys

    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(runs):
        for redact in (True, False):
            done = subprocess.run(
                [sys.executable, "-c", COLD_START.format(redact=redact)],
                capture_output=True,
                text=True,
                check=True,
            )
            ready, first_call = (float(value) for value in done.stdout.split())
            times[redact].append((ready, first_call))
    for redact, values in times.items():
        ready = statistics.median(value[0] for value in values) * 1e3
        first_call = statistics.median(value[1] for value in values) * 1e3
        label = "redaction on " if redact else "redaction off"
        print(f"{label}: open_sandbox to ready {ready:.0f} ms, first call {first_call:.0f} ms")


if __name__ == "__main__":
    main()
