"""The Prometheus metrics: known records, scraped over real HTTP, count what they should; the
scrape passes ``promtool check metrics``; label values stay bounded and valid whatever names
clients and upstreams use; the listen address is parsed strictly."""

from __future__ import annotations

import gc
import ipaddress
import shutil
import subprocess
import sys
import time
import unicodedata
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx
import pytest
import trio
from hypothesis import example, given
from hypothesis import strategies as st
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from trio_sandbox.mcp import BoundServer
from trio_sandbox.observe import (
    METRICS_PATH,
    CallKind,
    CallRecord,
    EgressRecord,
    EgressVerdict,
    LifecyclePhase,
    LifecycleRecord,
    Metrics,
    ObserveError,
    Outcome,
    SandboxGauges,
    parse_listen_address,
    serve_metrics,
)
from trio_sandbox.observe import _metrics as metrics_module

# Debian's prometheus package, which .ci/install installs.
PROMTOOL = shutil.which("promtool") or "promtool"


def call(
    name: str,
    upstream: str | None = "sandbox",
    outcome: Outcome = Outcome.OK,
    duration: float = 0.02,
    kind: CallKind = CallKind.TOOL_CALL,
) -> CallRecord:
    return CallRecord(
        kind=kind,
        started=time.time(),
        duration=duration,
        client=None,
        session=None,
        upstream=upstream,
        name=name,
        arguments={} if kind is CallKind.TOOL_CALL else None,
        outcome=outcome,
    )


def lifecycle(
    phase: LifecyclePhase,
    sandbox: str = "sandbox",
    *,
    limit: str | None = None,
    count: int | None = None,
    reason: str | None = None,
) -> LifecycleRecord:
    return LifecycleRecord(
        phase=phase, at=time.time(), sandbox=sandbox, limit=limit, count=count, reason=reason
    )


def egress(verdict: EgressVerdict, *, up: int = 0, down: int = 0, count: int = 1) -> EgressRecord:
    return EgressRecord(
        verdict=verdict,
        at=time.time(),
        protocol="https",
        target="example.org:443",
        sandbox="sandbox",
        bytes_up=up,
        bytes_down=down,
        count=count,
    )


@asynccontextmanager
async def served(metrics: Metrics, host: str = "127.0.0.1") -> AsyncIterator[BoundServer]:
    async with trio.open_nursery() as nursery:
        bound: BoundServer = await nursery.start(serve_metrics, metrics, host, 0)
        yield bound
        nursery.cancel_scope.cancel()


async def scrape(bound: BoundServer, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        response = await client.get(bound.url, headers=headers)
    assert response.status_code == 200, response.text
    return response


def families(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(
    found: Mapping[str, Metric], sample: str, labels: Mapping[str, str] | None = None
) -> float | None:
    """The value of the sample named ``sample`` with exactly ``labels``; None if absent."""
    for family in found.values():
        for each in family.samples:
            if each.name == sample and each.labels == dict(labels or {}):
                return float(each.value)
    return None


def label_values(found: Mapping[str, Metric], prefix: str, label: str) -> set[str]:
    """The values of ``label`` in the samples whose names start with ``prefix``."""
    return {
        sample.labels[label]
        for family in found.values()
        for sample in family.samples
        if sample.name.startswith(prefix) and label in sample.labels
    }


async def promtool_check(text: str) -> str:
    """``promtool check metrics`` on ``text``: its whole output (problems are printed)."""
    done = await trio.run_process(
        [PROMTOOL, "check", "metrics"],
        stdin=text.encode(),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, output
    return output


def feed_known(metrics: Metrics) -> None:
    for _ in range(3):
        metrics.record(call("run", duration=0.004))
    metrics.record(call("run", outcome=Outcome.TOOL_ERROR, duration=0.3))
    metrics.record(call("run", outcome=Outcome.FAILED, duration=40.0))
    metrics.record(call("search", upstream="docs", duration=0.02))
    metrics.record(call("no_such_tool", upstream=None, outcome=Outcome.FAILED, duration=0.0001))
    metrics.record(call("file:///a", upstream="docs", kind=CallKind.RESOURCE_READ))
    metrics.record(
        call("file:///b", upstream="docs", outcome=Outcome.FAILED, kind=CallKind.RESOURCE_READ)
    )
    metrics.record(lifecycle(LifecyclePhase.START))
    metrics.record(lifecycle(LifecyclePhase.READY))
    metrics.record(lifecycle(LifecyclePhase.RESPAWN, reason="exited with status 137: killed"))
    metrics.record(lifecycle(LifecyclePhase.START))
    metrics.record(lifecycle(LifecyclePhase.LIMIT_HIT, limit="memory", count=3))
    metrics.record(lifecycle(LifecyclePhase.LIMIT_HIT, limit="pids"))
    metrics.record(lifecycle(LifecyclePhase.START, sandbox="git"))
    metrics.record(lifecycle(LifecyclePhase.FAILED))
    metrics.record(lifecycle(LifecyclePhase.STOP))
    metrics.record(egress(EgressVerdict.ALLOWED, up=100, down=2000))
    metrics.record(egress(EgressVerdict.ALLOWED, up=5, down=7, count=4))
    metrics.record(egress(EgressVerdict.REFUSED, count=2))
    metrics.placeholder_made("github-pat")
    metrics.placeholder_made("github-pat")
    metrics.placeholder_made("env:API_TOKEN")
    metrics.output_shortened("sandbox")
    metrics.output_shortened(None)


async def test_a_scrape_counts_the_records_it_was_fed() -> None:
    metrics = Metrics()
    metrics.gauges = lambda: SandboxGauges(
        generation=2, ready_spares=1, memory_bytes=50_000_000, memory_limit_bytes=2**30
    )
    feed_known(metrics)
    async with served(metrics) as bound:
        assert bound.url == f"http://127.0.0.1:{bound.port}/metrics"
        response = await scrape(bound)
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = families(response.text)

    calls = "trio_sandbox_tool_calls_total"
    assert value(found, calls, {"upstream": "sandbox", "tool": "run", "outcome": "ok"}) == 3
    assert value(found, calls, {"upstream": "sandbox", "tool": "run", "outcome": "tool_error"}) == 1
    assert value(found, calls, {"upstream": "sandbox", "tool": "run", "outcome": "failed"}) == 1
    assert value(found, calls, {"upstream": "docs", "tool": "search", "outcome": "ok"}) == 1
    # A name no upstream claimed is whatever the client sent: never a label.
    unrouted = {"upstream": "(none)", "tool": "(unrouted)", "outcome": "failed"}
    assert value(found, calls, unrouted) == 1
    assert "no_such_tool" not in response.text

    seconds = "trio_sandbox_tool_call_duration_seconds"
    run = {"upstream": "sandbox", "tool": "run"}
    assert value(found, f"{seconds}_count", run) == 5
    assert value(found, f"{seconds}_sum", run) == pytest.approx(3 * 0.004 + 0.3 + 40.0)
    assert value(found, f"{seconds}_bucket", {**run, "le": "0.001"}) == 0
    assert value(found, f"{seconds}_bucket", {**run, "le": "0.005"}) == 3
    assert value(found, f"{seconds}_bucket", {**run, "le": "0.5"}) == 4
    assert value(found, f"{seconds}_bucket", {**run, "le": "30.0"}) == 4
    assert value(found, f"{seconds}_bucket", {**run, "le": "60.0"}) == 5
    assert value(found, f"{seconds}_bucket", {**run, "le": "300.0"}) == 5
    assert value(found, f"{seconds}_bucket", {**run, "le": "+Inf"}) == 5

    reads = "trio_sandbox_resource_reads_total"
    assert value(found, reads, {"upstream": "docs", "outcome": "ok"}) == 1
    assert value(found, reads, {"upstream": "docs", "outcome": "failed"}) == 1
    assert "file:///" not in response.text  # a URI is never a label
    assert value(found, "trio_sandbox_resource_read_duration_seconds_count", {"upstream": "docs"})

    starts = "trio_sandbox_sandbox_starts_total"
    assert value(found, starts, {"sandbox": "sandbox"}) == 2
    assert value(found, starts, {"sandbox": "git"}) == 1
    assert value(found, "trio_sandbox_sandbox_ready_total", {"sandbox": "sandbox"}) == 1
    assert value(found, "trio_sandbox_sandbox_respawns_total", {"sandbox": "sandbox"}) == 1
    assert "killed" not in response.text  # a respawn's reason is free text: not a label
    assert value(found, "trio_sandbox_sandbox_failures_total", {"sandbox": "sandbox"}) == 1
    assert value(found, "trio_sandbox_sandbox_stops_total", {"sandbox": "sandbox"}) == 1

    hits = "trio_sandbox_limit_hits_total"
    assert value(found, hits, {"limit": "memory"}) == 3
    assert value(found, hits, {"limit": "pids"}) == 1
    assert value(found, hits, {"limit": "output"}) == 2

    connections = "trio_sandbox_egress_connections_total"
    assert value(found, connections, {"verdict": "allowed"}) == 5
    assert value(found, connections, {"verdict": "refused"}) == 2
    assert value(found, connections, {"verdict": "failed"}) == 0
    assert value(found, "trio_sandbox_egress_bytes_total", {"direction": "up"}) == 105
    assert value(found, "trio_sandbox_egress_bytes_total", {"direction": "down"}) == 2007

    placeholders = "trio_sandbox_redaction_placeholders_total"
    assert value(found, placeholders, {"rule": "github-pat"}) == 2
    assert value(found, placeholders, {"rule": "env:API_TOKEN"}) == 1

    assert value(found, "trio_sandbox_sandbox_generation") == 2
    assert value(found, "trio_sandbox_ready_spares") == 1
    assert value(found, "trio_sandbox_session_sandboxes") == 0
    assert value(found, "trio_sandbox_sandbox_memory_bytes") == 50_000_000
    assert value(found, "trio_sandbox_sandbox_memory_limit_bytes") == 2**30
    # What cannot be told is left out, not shown as zero.
    assert "trio_sandbox_sandbox_pids" not in found
    assert "trio_sandbox_sandbox_pids_limit" not in found

    assert label_values(found, "trio_sandbox_build_info", "version")
    assert value(found, "process_open_fds") is not None


async def test_the_gauges_are_read_again_once_older_than_their_age(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics_module, "GAUGES_MAX_AGE", 0.0)  # every scrape reads them
    metrics = Metrics()
    async with served(metrics) as bound:
        assert "trio_sandbox_sandbox_generation" not in families((await scrape(bound)).text)
        generation = 0

        def gauges() -> SandboxGauges:
            return SandboxGauges(generation=generation, pids=12, pids_limit=512)

        metrics.gauges = gauges
        for generation in (1, 5):  # the closure reads it
            found = families((await scrape(bound)).text)
            assert value(found, "trio_sandbox_sandbox_generation") == generation
            assert value(found, "trio_sandbox_sandbox_pids") == 12
            assert value(found, "trio_sandbox_sandbox_pids_limit") == 512


async def test_a_failing_gauge_read_still_serves_the_counters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()

    def broken() -> SandboxGauges:
        raise RuntimeError("the sandbox is between generations")

    metrics.gauges = broken
    metrics.record(call("run"))
    async with served(metrics) as bound:
        found = families((await scrape(bound)).text)
    calls = {"upstream": "sandbox", "tool": "run", "outcome": "ok"}
    assert value(found, "trio_sandbox_tool_calls_total", calls) == 1
    assert "trio_sandbox_sandbox_generation" not in found
    assert "reading the sandbox's gauges for a scrape failed" in caplog.text


async def test_promtool_finds_no_problem_in_a_scrape() -> None:
    metrics = Metrics()
    metrics.gauges = lambda: SandboxGauges(
        generation=1, memory_bytes=1, memory_limit_bytes=2, pids=3, pids_limit=4
    )
    feed_known(metrics)
    # Names no well-behaved tool has: they must not make the exposition invalid.
    for name in ('a"b', "back\\slash", "new\nline", "\ud800lone", "\x00\x1b[31m", "é ✓ 名"):
        metrics.record(call(name))
    async with served(metrics) as bound:
        text = (await scrape(bound)).text
    output = await promtool_check(text)
    assert output == "", output  # no lint problem either


async def test_paths_and_methods() -> None:
    metrics = Metrics()
    async with served(metrics) as bound, httpx.AsyncClient() as client:
        base = f"http://127.0.0.1:{bound.port}"
        for path in ("/", "/metrics/", "/favicon.ico", "/Metrics"):
            assert (await client.get(base + path)).status_code == 404, path
        refused = await client.post(base + METRICS_PATH, content=b"x")
        assert refused.status_code == 405
        assert refused.headers["allow"] == "GET, HEAD"
        head = await client.head(base + METRICS_PATH)
        assert head.status_code == 200
        assert head.content == b""
        # A query string is no other path.
        assert (await client.get(base + METRICS_PATH + "?x=1")).status_code == 200
        # Header bytes that are not UTF-8 are no reason to fail a scrape.
        odd = await client.get(base + METRICS_PATH, headers={b"accept": b"text/plain; x=\xff"})
        assert odd.status_code == 200


async def test_gzip_and_openmetrics_when_asked() -> None:
    metrics = Metrics()
    metrics.record(call("run"))
    async with served(metrics) as bound, httpx.AsyncClient() as client:
        plain = await client.get(bound.url, headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers
        zipped = await client.get(bound.url, headers={"accept-encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert "trio_sandbox_tool_calls_total" in zipped.text  # httpx unzipped it
        accept = "application/openmetrics-text; version=1.0.0"
        open_metrics = await client.get(bound.url, headers={"accept": accept})
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    parsed = openmetrics_families(open_metrics.text)  # type: ignore[no-untyped-call]
    found = {family.name: family for family in parsed}
    calls = {"upstream": "sandbox", "tool": "run", "outcome": "ok"}
    assert value(found, "trio_sandbox_tool_calls_total", calls) == 1


async def test_two_metrics_in_one_process_count_apart() -> None:
    first, second = Metrics(), Metrics()
    first.record(call("run"))
    first.record(call("run"))
    second.record(call("run"))
    first.placeholder_made("password")
    async with served(first) as one, served(second) as two:
        assert one.port != two.port
        found_first = families((await scrape(one)).text)
        found_second = families((await scrape(two)).text)
    calls = {"upstream": "sandbox", "tool": "run", "outcome": "ok"}
    assert value(found_first, "trio_sandbox_tool_calls_total", calls) == 2
    assert value(found_second, "trio_sandbox_tool_calls_total", calls) == 1
    rule = {"rule": "password"}
    assert value(found_first, "trio_sandbox_redaction_placeholders_total", rule) == 1
    assert value(found_second, "trio_sandbox_redaction_placeholders_total", rule) is None
    # And neither is prometheus-client's global registry.
    assert b"trio_sandbox_" not in generate_latest(REGISTRY)


async def test_label_values_stay_bounded() -> None:
    metrics = Metrics(max_tools=5)
    for round_ in range(3):
        for i in range(40):
            metrics.record(call(f"tool_{i}", upstream="sandbox"))
            # A client calling names no upstream has takes no tool's room.
            metrics.record(call(f"made_up_{round_}_{i}", upstream=None))
    metrics.record(call("late", upstream="docs"))
    metrics.record(call("tool_0", upstream="sandbox", outcome=Outcome.FAILED))
    for i in range(1000):
        metrics.placeholder_made(f"env:VARIABLE_{i}")
    for i in range(200):
        metrics.record(call("x", upstream=f"upstream_{i}", kind=CallKind.RESOURCE_READ))
        metrics.record(lifecycle(LifecyclePhase.START, sandbox=f"sandbox_{i}"))
    metrics.record(lifecycle(LifecyclePhase.LIMIT_HIT, limit="cpu", count=2))
    metrics.record(lifecycle(LifecyclePhase.LIMIT_HIT, limit=None))
    async with served(metrics) as bound:
        found = families((await scrape(bound)).text)

    calls = "trio_sandbox_tool_calls_total"
    tools = label_values(found, calls, "tool")
    # The first five names keep their labels; every later one is "(other)".
    assert tools == {"tool_0", "tool_1", "tool_2", "tool_3", "tool_4", "(other)", "(unrouted)"}
    assert value(found, calls, {"upstream": "sandbox", "tool": "tool_0", "outcome": "ok"}) == 3
    failed = {"upstream": "sandbox", "tool": "tool_0", "outcome": "failed"}
    assert value(found, calls, failed) == 1  # an admitted name is admitted for every outcome
    other = {"upstream": "sandbox", "tool": "(other)", "outcome": "ok"}
    assert value(found, calls, other) == 3 * 35
    assert value(found, calls, {"upstream": "docs", "tool": "(other)", "outcome": "ok"}) == 1
    unrouted = {"upstream": "(none)", "tool": "(unrouted)", "outcome": "ok"}
    assert value(found, calls, unrouted) == 3 * 40
    histogram = label_values(found, "trio_sandbox_tool_call_duration_seconds", "tool")
    assert histogram == tools

    rules = label_values(found, "trio_sandbox_redaction_placeholders_total", "rule")
    assert len(rules) == 256 + 1
    assert "(other)" in rules
    placeholders = "trio_sandbox_redaction_placeholders_total"
    assert value(found, placeholders, {"rule": "(other)"}) == 1000 - 256

    # Upstreams are bounded across calls and reads: "sandbox" and "docs" of the calls, 62 of
    # the reads', then "(other)"; and "(none)" for the calls that reached no upstream.
    upstreams = label_values(found, "trio_sandbox_", "upstream")
    assert len(upstreams - {"(other)", "(none)"}) == 64
    assert {"sandbox", "docs", "upstream_61", "(other)", "(none)"} <= upstreams
    assert "upstream_62" not in upstreams
    sandboxes = label_values(found, "trio_sandbox_sandbox_starts_total", "sandbox")
    assert len(sandboxes) == 64 + 1
    assert label_values(found, "trio_sandbox_limit_hits_total", "limit") == {
        "memory",
        "pids",
        "output",
        "(other)",
    }
    assert value(found, "trio_sandbox_limit_hits_total", {"limit": "(other)"}) == 3


@given(st.text(max_size=300))
@example("\ud800")
@example("\u202eevil")
@example("x" * 10_000)
def test_a_tool_name_becomes_a_short_valid_label(name: str) -> None:
    metrics = Metrics()
    metrics.record(call(name))
    text = generate_latest(metrics.registry).decode("utf-8")
    [tool] = label_values(families(text), "trio_sandbox_tool_calls_total", "tool")
    assert 1 <= len(tool) <= 128
    unshowable = {"Cc", "Cf", "Cs", "Zl", "Zp"}
    assert not any(unicodedata.category(c) in unshowable for c in tool)
    if name and len(name) <= 128 and not any(unicodedata.category(c) in unshowable for c in name):
        assert tool == name


def test_bad_records_do_not_break_the_sink() -> None:
    """The warden's sums and the clock are outside the sink's control: a count or a size below
    zero counts as none rather than raising (a counter cannot go down)."""
    metrics = Metrics()
    metrics.record(egress(EgressVerdict.ALLOWED, up=-5, down=-1, count=-3))
    metrics.record(call("run", duration=-1.0))
    metrics.record(lifecycle(LifecyclePhase.LIMIT_HIT, limit="memory", count=-2))


async def test_a_big_scrape_does_not_stall_the_event_loop() -> None:
    """At the label bounds a render takes a tenth of a second; the loop keeps running."""
    metrics = Metrics()
    for upstream in ("a", "b"):
        for i in range(300):
            for outcome in Outcome:
                metrics.record(call(f"tool_{i}", upstream=upstream, outcome=outcome))
    started = time.perf_counter()
    generate_latest(metrics.scrape())
    render = time.perf_counter() - started

    longest = 0.0

    # The scraper is another process: its own parsing of a megabyte is not the server's stall.
    scraper = (
        "import sys, httpx\n"
        "for encoding in ('gzip', 'identity', 'gzip'):\n"
        "    got = httpx.get(sys.argv[1], headers={'accept-encoding': encoding})\n"
        "    assert got.status_code == 200\n"
        "print(got.text)\n"
    )

    async with served(metrics) as bound, trio.open_nursery() as nursery:

        async def tick() -> None:
            nonlocal longest
            last = time.perf_counter()
            while True:
                await trio.sleep(0.001)
                now = time.perf_counter()
                longest = max(longest, now - last)
                last = now

        nursery.start_soon(tick)
        await trio.sleep(0.01)
        gc.disable()  # a collection's pause is not the render's
        try:
            done = await trio.run_process(
                [sys.executable, "-c", scraper, bound.url], capture_stdout=True
            )
        finally:
            gc.enable()
        nursery.cancel_scope.cancel()
    text = done.stdout.decode()
    # 500 (upstream, tool) pairs, the last 100 of upstream b as one "(other)", 18 buckets each.
    assert text.count("trio_sandbox_tool_call_duration_seconds_bucket") == 501 * 18
    assert longest < max(render / 2, 0.02), (longest, render)


async def test_a_host_name_listens_on_its_address() -> None:
    metrics = Metrics()
    async with served(metrics, "localhost") as bound:
        assert bound.host == "127.0.0.1"
        await scrape(bound)
    async with trio.open_nursery() as nursery:
        with pytest.raises(ObserveError, match="cannot resolve"):
            await nursery.start(serve_metrics, metrics, "no-such-host.invalid", 0)


async def test_an_ipv6_address_is_listened_on() -> None:
    try:
        probe = trio.socket.socket(trio.socket.AF_INET6)
        await probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    host, _ = parse_listen_address("[::1]:0")
    async with served(Metrics(), host) as bound:
        assert bound.url.startswith("http://[::1]:")
        await scrape(bound)


def test_importing_observe_does_not_import_prometheus_client() -> None:
    code = "import sys, trio_sandbox.observe; print('prometheus_client' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:0", ("::1", 0)),
        ("[::]:9464", ("::", 9464)),
        ("[0:0:0:0:0:0:0:1]:80", ("::1", 80)),
        ("localhost:9464", ("localhost", 9464)),
        ("metrics.example.org.:65535", ("metrics.example.org", 65535)),
    ],
)
def test_good_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "give a host and a port"),
        ("127.0.0.1", "give a host and a port"),
        (":9464", "the host is missing"),
        ("127.0.0.1:", "the port"),
        ("127.0.0.1:65536", "the port"),
        ("127.0.0.1:-1", "the port"),
        ("127.0.0.1:+80", "the port"),
        ("127.0.0.1: 80", "the port"),
        ("127.0.0.1:1_000", "the port"),
        ("127.0.0.1:٣", "the port"),
        ("::1:9464", "in brackets"),
        ("[::1]", "the port is missing"),
        ("[::1:9464", "closing"),
        ("[127.0.0.1]:80", "not an IPv6 address"),
        ("[fe80::1%eth0]:80", "zone"),
        ("256.0.0.1:80", "not an IPv4 address"),
        ("01.2.3.4:80", "not an IPv4 address"),
        ("host name:80", "not an IP address or a host name"),
        ("-bad.example:80", "not an IP address or a host name"),
        ("bücher.example:80", "not an IP address or a host name"),
        ("a..b:80", "not an IP address or a host name"),
        (f"{'a' * 64}.example:80", "not an IP address or a host name"),
        ("http://127.0.0.1:80", "not a URL"),
    ],
)
def test_bad_listen_addresses(text: str, why: str) -> None:
    with pytest.raises(ObserveError, match="metrics listen address") as raised:
        parse_listen_address(text)
    assert why in str(raised.value)


@given(st.text())
@example("[")
@example("[]:")
@example("[::1]:")
@example("1.2.3.4:99999999999999999999999999")
def test_a_listen_address_parses_or_is_refused_clearly(text: str) -> None:
    try:
        host, port = parse_listen_address(text)
    except ObserveError:
        return
    assert 0 <= port <= 65535
    assert host
    assert host.isascii()


@given(
    st.one_of(
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(lambda address: f"[{address}]"),
        st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9](\.[a-z][a-z0-9]{0,10}){0,3}", fullmatch=True),
    ),
    st.integers(0, 65535),
)
def test_every_well_formed_address_parses(host: str, port: int) -> None:
    parsed_host, parsed_port = parse_listen_address(f"{host}:{port}")
    assert parsed_port == port
    if host[0].isalpha():
        assert parsed_host == host
    else:
        assert ipaddress.ip_address(parsed_host) == ipaddress.ip_address(host.strip("[]"))


async def test_a_request_for_another_name_is_refused_so_a_rebound_page_reads_nothing() -> None:
    metrics = Metrics()
    metrics.record(call("secret_tool_name_visible_to_scrapers"))
    async with served(metrics) as bound, httpx.AsyncClient() as client:
        for host in ("attacker.example", f"attacker.example:{bound.port}", "evil.test:80"):
            refused = await client.get(bound.url, headers={"Host": host})
            assert refused.status_code == 421, host
            assert "secret_tool_name" not in refused.text
        for host in ("localhost", f"127.0.0.1:{bound.port}", f"[::1]:{bound.port}"):
            allowed = await client.get(bound.url, headers={"Host": host})
            assert allowed.status_code == 200, host


def test_many_scrapers_read_the_gauges_at_most_once_a_second() -> None:
    reads = 0

    def gauges() -> SandboxGauges:
        nonlocal reads
        reads += 1
        return SandboxGauges(generation=reads)

    metrics = Metrics()
    metrics.gauges = gauges
    for _ in range(50):
        metrics.scrape()
    assert reads == 1
