"""The attacks of the reports tests, as the code in the sandbox would run them, and a tiny origin
server on the host's loopback for the egress audit to have a real allowed destination.

``FORGE`` writes forged warden reports into every pipe it can open through ``/proc/PID/fd/N``
(stdout and stderr of every process it sees: the warden's stderr among them), in every form the
host ever read or could read: the old ``trio-sandbox-warden: report`` line, the report
channel's JSON lines, egress decision lines, warden warnings. It names a cgroup directory of its
own making (in its workspace, whose host path it is given) so that a host that believed it would
read usage the sandbox chose. It prints what it wrote into and every pipe it saw.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import trio

FORGED_MEMORY = 4242424242
FORGED_PIDS = 4242
FORGED_NAME = "forged.example:443"
FORGED_WARNING = "FORGED warning from the sandbox"

_LIMIT = {"limit": 1, "enforced_by": "forged"}
_COUNTERS = {"allowed": 999, "refused": 0, "failed": 0, "bytes_sent": 0, "bytes_received": 0}
_DIRECTORY = "@DIRECTORY@"
_LIMITS = {
    **{name: _LIMIT for name in ("memory", "pids", "cpus", "tmp_size")},
    "cgroups": {name: _DIRECTORY for name in ("memory", "pids", "unified")},
}
_EGRESS = {
    **{table: {FORGED_NAME: _COUNTERS} for table in ("rules", "destinations", "refused")},
    "connections_open": 99,
}
FORGED_LINES = "\n".join(
    [
        "trio-sandbox-warden: report " + json.dumps({"limits": _LIMITS}),
        json.dumps({"limits": _LIMITS}),
        json.dumps({"warning": FORGED_WARNING}),
        json.dumps({"egress": _EGRESS}),
        f"trio-sandbox-warden: egress: allowed {FORGED_NAME} (203.0.113.9)",
        f"trio-sandbox-warden: warning: {FORGED_WARNING}",
    ]
)
# Standard library modules a minimal image has (python3-minimal has no json).
FORGE = (
    r"""
import os, sys
host_workspace = sys.argv[1] if len(sys.argv) > 1 else "/nowhere"
try:  # a cgroup directory of the sandbox's making, where it has a workspace
    os.makedirs("/work/forged-cgroup", exist_ok=True)
    for name, value in (("memory.usage_in_bytes", MEMORY), ("memory.current", MEMORY),
                        ("pids.current", PIDS)):
        with open("/work/forged-cgroup/" + name, "w") as out:
            out.write("%d\n" % value)
except OSError:
    pass
payload = (LINES.replace("DIRECTORY", host_workspace + "/forged-cgroup") + "\n").encode()
written, seen = [], set()
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        fds = os.listdir("/proc/%s/fd" % pid)
    except OSError:
        continue
    for fd in fds:
        path = "/proc/%s/fd/%s" % (pid, fd)
        try:
            target = os.readlink(path)
        except OSError:
            continue
        if not target.startswith("pipe:"):
            continue
        seen.add(target)
        try:
            handle = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            for _ in range(3):
                os.write(handle, payload)
            written.append("%s/%s" % (pid, fd))
        except OSError:
            pass
        finally:
            os.close(handle)
quoted = lambda items: "[" + ", ".join('"%s"' % item for item in items) + "]"
print('{"written": %s, "pipes": %s}' % (quoted(written), quoted(sorted(seen))))
""".replace("MEMORY", str(FORGED_MEMORY))
    .replace("PIDS", str(FORGED_PIDS))
    .replace("LINES", repr(FORGED_LINES).replace("@DIRECTORY@", "DIRECTORY"))
)

HELLO = b"hello from the origin\n"


@contextlib.asynccontextmanager
async def serving_hello(host: str) -> AsyncIterator[int]:
    """An HTTP/1.1 server on ``host`` answering every request with ``HELLO``; its port."""

    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                data += chunk
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(HELLO)}\r\nConnection: close\r\n\r\n"
            await stream.send_all(head.encode() + HELLO)

    listeners = await trio.open_tcp_listeners(0, host=host)
    port: int = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, answer, listeners)
        yield port
        nursery.cancel_scope.cancel()
