"""What a sandbox that loops on refused egress requests costs the host.

A real bubblewrap sandbox (``open_sandbox``, ``network = "allow"``, ``cpus`` as given) runs one
command: ``--workers`` processes that, for ``--seconds``, send refused requests as fast as they
can, in turn: a new connection per request (``CONNECT unlisted-N.example:443``), absolute-form
requests one at a time on a kept-alive connection, and batches of 100 pipelined requests.
Measured over the loop: the CPU seconds of the warden process (where the egress proxy runs) and
of this process (the host: the sandbox's supervisor and its log, with an INFO handler that
formats every record), the requests the sandbox got answered, and the lines the host logged.

Run (the figures of NOTES.md):

    .venv/bin/python benchmarks/egress_refusals.py --seconds 10 --cpus 0.2

To measure another checkout (an older commit), run this file from that checkout's directory with
``PYTHONPATH`` naming it: the warden is started with ``python -m``, which puts the working
directory first on its path.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time

import trio

from trio_sandbox import SandboxConfig, open_sandbox

# Runs inside the sandbox: argv = seconds, workers; prints the answered requests as JSON.
LOOP = r"""
import json, os, socket, sys, time

def new_connections(index, until):
    done = 0
    while time.monotonic() < until:
        try:
            with socket.create_connection(("127.0.0.1", 3128), timeout=5) as s:
                s.sendall(f"CONNECT unlisted-{index}-{done}.example:443 HTTP/1.1\r\n\r\n".encode())
                if s.recv(4096):
                    done += 1
        except OSError:
            pass
    return done

def kept_alive(index, until):
    done = 0
    while time.monotonic() < until:
        try:
            with socket.create_connection(("127.0.0.1", 3128), timeout=5) as s:
                while time.monotonic() < until:
                    request = f"GET http://unlisted-{index}.example/ HTTP/1.1\r\nHost: x\r\n\r\n"
                    s.sendall(request.encode())
                    answer = b""
                    while b"\r\n\r\n" not in answer or not answer.endswith(b"\n"):
                        chunk = s.recv(4096)
                        if not chunk:
                            raise OSError("closed")
                        answer += chunk
                    done += 1
        except OSError:
            pass
    return done

def pipelined(index, until):
    # Many requests in one write, the answers read in bulk: the cheapest loop for the sandbox.
    done = 0
    batch = f"GET http://unlisted-{index}.example/ HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 100
    while time.monotonic() < until:
        try:
            with socket.create_connection(("127.0.0.1", 3128), timeout=5) as s:
                while time.monotonic() < until:
                    s.sendall(batch)
                    answers = b""
                    while answers.count(b"HTTP/1.1 403") < 100:
                        chunk = s.recv(1 << 16)
                        if not chunk:
                            raise OSError("closed")
                        answers += chunk
                    done += 100
        except OSError:
            pass
    return done

seconds, workers = float(sys.argv[1]), int(sys.argv[2])
until = time.monotonic() + seconds
read_end, write_end = os.pipe()
for index in range(workers):
    if os.fork() == 0:
        done = (new_connections, kept_alive, pipelined)[index % 3](index, until)
        os.write(write_end, f"{done}\n".encode())
        os._exit(0)
os.close(write_end)
with os.fdopen(read_end) as counts:
    total = sum(int(line) for line in counts)
print(json.dumps({"answered": total}))
"""


class _CountingHandler(logging.Handler):
    """Formats every record (as a log file would) and counts them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)
        self.lines += 1


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (its threads, not its children)."""
    with open(f"/proc/{pid}/stat", "rb") as source:
        fields = source.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(seconds: float, cpus: str, workers: int) -> dict[str, object]:
    handler = _CountingHandler()
    package_logger = logging.getLogger("trio_sandbox")
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)
    config = SandboxConfig(network="allow", allow_domains=["pypi.org"], cpus=cpus)
    try:
        async with open_sandbox(config) as sandbox:
            warden = sandbox.warden_pid
            assert warden is not None
            command = f"python3 -c '{LOOP}' {seconds:g} {workers}"
            await sandbox.call_tool("run_command", {"command": "true"})
            lines_before, host_before = handler.lines, _own_cpu()
            warden_before, wall_before = _process_cpu(warden), time.monotonic()
            result = await sandbox.call_tool(
                "run_command", {"command": command, "timeout": seconds + 60}
            )
            wall = time.monotonic() - wall_before
            warden_cpu = _process_cpu(warden) - warden_before
            host_cpu = _own_cpu() - host_before
            lines = handler.lines - lines_before
            text = result.text_content
            if "{" not in text:
                raise RuntimeError(f"the loop failed: {text[-2000:]}")
            answered = json.loads(text[text.index("{") : text.index("}") + 1])["answered"]
    finally:
        package_logger.removeHandler(handler)
    return {
        "seconds": round(wall, 1),
        "requests answered": answered,
        "warden CPU s": round(warden_cpu, 2),
        "host CPU s": round(host_cpu, 2),
        "host log lines": lines,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cpus", default="0.2", help="the sandbox's cpus limit")
    parser.add_argument("--workers", type=int, default=6)
    options = parser.parse_args()
    figures = trio.run(measure, options.seconds, options.cpus, options.workers)
    import trio_sandbox

    print(f"code: {os.path.dirname(os.path.dirname(trio_sandbox.__file__))}")
    for name, value in figures.items():
        print(f"{name:>20}: {value}")


if __name__ == "__main__":
    main()
