"""The sandbox's connections as the audit gets them: real bubblewrap sandboxes (root and the
ordinary user) with ``network = allow``, the real warden and its egress proxy, real origins on
127.0.0.2 and curl inside; every record comes through the report channel into
``LaunchHooks.on_egress`` as an ``observe.EgressRecord``.

And the flood: the warden alone with a report pipe, the sandbox's code refusing itself in a
loop; the ``connection`` lines are bounded and their counts sum to every request exactly.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.egress.egress_harness import HELLO, serving_site
from tests.security.reports_probes import serving_hello
from tests.security.reports_warden import run_warden_with_report_fd
from tests.support.sandbox_users import SandboxUser
from trio_sandbox.contract import EGRESS_PORT, REPORT_MAX_LINE_BYTES
from trio_sandbox.observe import EgressRecord, EgressVerdict
from trio_sandbox.sandbox._report import WardenReport

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or shutil.which("curl") is None,
    reason="needs bubblewrap and curl",
)

CHILD = Path(__file__).with_name("egress_records_child.py")
ORIGIN_HOST = "127.0.0.2"
BIG = 200_000
# What an HTTP response head (and a request head) may add to a body: curl's and the origin's.
HEAD_SLACK = 1024


async def test_each_connection_is_one_record_with_plausible_bytes(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    started = time.time()
    async with serving_site(workspace / "origin", host=ORIGIN_HOST) as origins:
        (origins.site / "big.bin").write_bytes(b"b" * BIG)
        http, https = f"{ORIGIN_HOST}:{origins.http}", f"{ORIGIN_HOST}:{origins.https}"
        socks = f"socks5h://127.0.0.1:{EGRESS_PORT}"
        plan = {
            "allow": [http, https],
            "commands": [
                f"curl -sS --fail http://{http}/hello.txt",
                f"curl -sS -o /dev/null -w '%{{http_code}}' http://127.0.0.3:{origins.http}/x",
                f"curl -sS --fail -k https://{https}/hello.txt",
                f"curl -sS --fail --proxy {socks} http://{http}/hello.txt",
                f"curl -sS --fail -o /dev/null -w '%{{size_download}}' http://{http}/big.bin",
            ],
        }
        report = await sandbox_user.run_json(
            str(CHILD), stdin=json.dumps(plan).encode(), home=workspace, limit=150
        )
    hello, refused, tls, socks_hello, big = report["outputs"]
    assert hello.startswith(HELLO.decode())
    assert refused.startswith("403")
    assert tls.startswith(HELLO.decode())
    assert socks_hello.startswith(HELLO.decode())
    assert big.startswith(str(BIG))
    records: list[dict[str, Any]] = report["records"]
    assert [(r["verdict"], r["protocol"], r["target"]) for r in records] == [
        ("allowed", "http", http),
        ("refused", "http", f"127.0.0.3:{origins.http}"),
        ("allowed", "connect", https),
        ("allowed", "socks5", http),
        ("allowed", "http", http),
    ], records
    for record in records:
        assert record["event"] == "egress"
        assert record["sandbox"] == "sandbox"
        assert record["generation"] == 1
        assert record["count"] == 1
        assert 0 <= record["duration_s"] < 30
        assert record["time"] >= time.strftime("%Y-%m-%dT%H:%M", time.gmtime(started - 60))
    first, refusal, tunnel, socks_record, big_record = records
    for allowed in (first, tunnel, socks_record, big_record):
        rule = https if allowed is tunnel else http
        assert (allowed["rule"], allowed["reason"]) == (rule, None)
        assert allowed["bytes_up"] > 0
    # Plain HTTP through the proxy and SOCKS5: the body and the heads around it.
    for small in (first, socks_record):
        assert len(HELLO) < small["bytes_down"] <= len(HELLO) + HEAD_SLACK
        assert small["bytes_up"] <= HEAD_SLACK
    assert BIG < big_record["bytes_down"] <= BIG + HEAD_SLACK
    assert big_record["bytes_up"] <= HEAD_SLACK
    # TLS in a tunnel: the certificate and the records around the body.
    assert tunnel["bytes_down"] > len(HELLO)
    assert tunnel["bytes_up"] > 100  # a ClientHello at least
    assert refusal["rule"] is None
    assert refusal["reason"].startswith("not in allow_domains")
    assert (refusal["bytes_up"], refusal["bytes_down"]) == (0, 0)


REFUSE_IN_A_LOOP = r"""
import json, socket, sys
count = int(sys.argv[1])
answered = 0
sent = 0
while sent < count:
    batch = min(50, count - sent)
    with socket.create_connection(("127.0.0.1", 3128), timeout=60) as s:
        s.sendall(b"".join(
            b"GET http://refused.example/ HTTP/1.1\r\nHost: r\r\n\r\n" for _ in range(batch)
        ))
        data = b""
        while data.count(b"HTTP/1.1 403") < batch:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        answered += data.count(b"HTTP/1.1 403")
    sent += batch
print(json.dumps({"answered": answered}))
"""


async def test_a_flood_of_refusals_is_bounded_and_every_one_counted(
    sandbox_user: SandboxUser,
) -> None:
    count = 400
    async with serving_hello(ORIGIN_HOST) as port:
        allowed = f"{ORIGIN_HOST}:{port}"
        fetch = (
            "import urllib.request as u;"
            f" print(u.urlopen('http://{allowed}/', timeout=30).read().decode())"
        )
        script = f"python3 -c {shlex.quote(REFUSE_IN_A_LOOP)} {count}"
        script += f" && python3 -c {shlex.quote(fetch)}"
        result, lines, _inode = await run_warden_with_report_fd(
            sandbox_user,
            "--network",
            "allow",
            f"--allow-domain={allowed}",
            command=["sh", "-c", script],
        )
    assert result.returncode == 0, result.stderr.decode()[-4000:]
    assert json.loads(result.stdout.decode().splitlines()[0]) == {"answered": count}
    records: list[EgressRecord] = []
    report = WardenReport(records.append)
    for line in lines:
        assert len(line.encode()) + 1 <= REPORT_MAX_LINE_BYTES
        report.read_line(line)
    connection_lines = [line for line in lines if line.startswith('{"connection"')]
    assert len(connection_lines) == len(records)
    refused = [r for r in records if r.verdict is EgressVerdict.REFUSED]
    allowed_records = [r for r in records if r.verdict is EgressVerdict.ALLOWED]
    # Every request in exactly one record.
    assert sum(r.count for r in refused) == count
    assert all(r.target == "refused.example:80" for r in refused)
    assert [(r.count, r.target) for r in allowed_records] == [(1, allowed)]
    # The proxy's throttle lets a burst of 100 and then 50 a second through: the first window
    # holds more than 100 decisions, so some were summed rather than listed one by one.
    assert any(r.count > 1 for r in refused)
    assert len(records) < count
