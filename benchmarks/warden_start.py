"""Start-up to the first byte served through the published port, per warden back end.

Each run starts a sandbox whose command is a tiny TCP server (system python3: bind, listen,
send one byte per connection) and polls 127.0.0.1:HOSTPORT until a byte arrives. Compared in
the same run, medians of N runs:
- unsandboxed: the server started directly, on the host port;
- plain bwrap: bwrap with exactly the warden's flags (built by the same code), except that it
  shares the host network so the server can bind the host port itself: the warden's cost is
  the rest (Python + Trio start, argument building, the relay into the sandbox's netns);
- warden bwrap / warden process / warden podman (when podman and the test image exist);
- run as root on a machine prepared by .ci/install: the bwrap warden as root and as the
  ordinary user trio-sandbox-test, both with .venv-user's interpreter (Debian's python3), so
  that the two differ only in who runs them (for an ordinary user the published port goes
  through the namespace helper into the sandbox's user namespace).

    .venv/bin/python benchmarks/warden_start.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from trio_sandbox.contract import NetworkMode
from trio_sandbox.warden import WrapSpec
from trio_sandbox.warden._seccomp import deny_list_fd
from trio_sandbox.warden.bwrap._command import BWRAP_ENV, bwrap_argv

SERVER = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
while True:
    client, _ = server.accept()
    client.sendall(b"x")
    client.close()
"""
SERVER_PYTHON = "/usr/bin/python3"
INNER_PORT = 8080
PODMAN_IMAGE = "localhost/trio-sandbox-test:latest"
WARDEN = [sys.executable, "-m", "trio_sandbox.warden", "wrap"]
TEST_USER = "trio-sandbox-test"
USER_PYTHON = Path(__file__).resolve().parents[1] / ".venv-user" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


HTTP_PROBE = b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def wait_first_byte(
    port: int, deadline: float, process: subprocess.Popen[bytes], probe: bytes
) -> None:
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(probe)
                if sock.recv(1):
                    return
        except OSError:
            pass
        time.sleep(0.001)
    raise RuntimeError(f"nothing served on port {port} (exit status {process.poll()})")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


_close_after_stop: list[int] = []


def measure(
    start: Callable[[int], subprocess.Popen[bytes]], probe: bytes = b"", timeout: float = 60
) -> float:
    port = free_port()
    began = time.perf_counter()
    process = start(port)
    try:
        wait_first_byte(port, time.monotonic() + timeout, process, probe)
        return time.perf_counter() - began
    finally:
        stop(process)
        while _close_after_stop:
            os.close(_close_after_stop.pop())


def spawn(
    argv: list[str], env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
        pass_fds=pass_fds,
    )


def unsandboxed(port: int) -> subprocess.Popen[bytes]:
    return spawn([SERVER_PYTHON, "-c", SERVER, str(port)])


def tool_server(port: int) -> tuple[str, ...]:
    """The real tool server (plain HTTP on loopback, so no client CA is needed)."""
    return (sys.executable, "-m", "trio_sandbox.tools", "--plain-http", "--bind", "127.0.0.1")


def plain_bwrap(port: int) -> subprocess.Popen[bytes]:
    return plain_bwrap_running((SERVER_PYTHON, "-c", SERVER, str(port)))


def plain_bwrap_tool_server(port: int) -> subprocess.Popen[bytes]:
    return plain_bwrap_running((*tool_server(port), "--port", str(port)))


def plain_bwrap_running(command: tuple[str, ...]) -> subprocess.Popen[bytes]:
    spec = WrapSpec(image="host", command=command, network=NetworkMode.HOST)
    info_read, info_write = os.pipe()
    seccomp = deny_list_fd()
    argv = bwrap_argv(spec, [], as_root=os.geteuid() == 0, info_fd=info_write, seccomp_fd=seccomp)
    try:
        return spawn(argv, env=BWRAP_ENV, pass_fds=(info_write, seccomp))
    finally:
        os.close(info_write)
        os.close(seccomp)
        _close_after_stop.append(info_read)  # bwrap writes its info there: keep a reader


def warden(
    backend: str,
    image: str,
    python: str = SERVER_PYTHON,
    warden_python: str = sys.executable,
    as_user: str | None = None,
) -> Callable[[int], subprocess.Popen[bytes]]:
    def start(port: int) -> subprocess.Popen[bytes]:
        options = ["--backend", backend, "-p", f"127.0.0.1:{port}:{INNER_PORT}"]
        command = [python, "-c", SERVER, str(INNER_PORT)]
        argv = [warden_python, "-m", "trio_sandbox.warden", "wrap", *options, image, "--"]
        env = None
        if as_user is not None:
            entry = pwd.getpwnam(as_user)
            argv = [
                "setpriv",
                f"--reuid={entry.pw_uid}",
                f"--regid={entry.pw_gid}",
                "--init-groups",
                "--",
                *argv,
            ]
            env = {"PATH": "/usr/bin:/bin", "HOME": entry.pw_dir}
        return spawn([*argv, *command], env=env)

    return start


def ordinary_user_available() -> bool:
    if os.geteuid() != 0 or not USER_PYTHON.exists():
        return False
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        return False
    return True


def warden_tool_server(port: int) -> subprocess.Popen[bytes]:
    options = ["-p", f"127.0.0.1:{port}:{INNER_PORT}", "host", "--"]
    return spawn([*WARDEN, *options, *tool_server(port), "--port", str(INNER_PORT)])


def podman_image_present() -> bool:
    try:
        probe = subprocess.run(["podman", "image", "exists", PODMAN_IMAGE], check=False)
    except OSError:
        return False
    return probe.returncode == 0


def main() -> None:
    # A shell's background job starts with SIGINT ignored, and children inherit that: the
    # stop below would then hang for the baselines. A Python handler is reset by exec.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    cases: dict[str, Callable[[int], subprocess.Popen[bytes]]] = {
        "unsandboxed process": unsandboxed,
        "plain bwrap": plain_bwrap,
        "warden bwrap": warden("bwrap", "host"),
        "warden process": warden("process", "host"),
    }
    if podman_image_present():
        cases["warden podman"] = warden("podman", PODMAN_IMAGE, "python3")
    if ordinary_user_available():
        cases["bwrap, root, venv-user"] = warden("bwrap", "host", warden_python=str(USER_PYTHON))
        cases["bwrap, user, venv-user"] = warden(
            "bwrap", "host", warden_python=str(USER_PYTHON), as_user=TEST_USER
        )
    samples: dict[str, list[float]] = {name: [] for name in cases}
    load_before = os.getloadavg()[0]  # other work on the machine inflates every figure
    for start in cases.values():  # warm-up: page cache, podman storage
        measure(start)
    calibration: list[float] = []
    for _ in range(runs):  # interleaved, so that drift hits every case alike
        for name, start in cases.items():
            samples[name].append(measure(start))
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import attrs, trio"], check=True)
        calibration.append(time.perf_counter() - began)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["unsandboxed process"]
    plain = medians["plain bwrap"]
    print(f"start-up to first byte through the published port, median of {runs} runs")
    print(f"load average before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    header = ("case", "median ms", "min ms", "x unsandboxed", "+ms vs plain bwrap")
    print(f"{header[0]:22s} {header[1]:>10s} {header[2]:>8s} {header[3]:>14s} {header[4]:>19s}")
    for name, median in medians.items():
        print(
            f"{name:22s} {median * 1000:10.1f} {min(samples[name]) * 1000:8.1f}"
            f" {median / base:14.2f} {(median - plain) * 1000:19.1f}"
        )
    print(
        f"calibration: the warden's interpreter starting and importing attrs + trio takes"
        f" {statistics.median(calibration) * 1000:.1f} ms (median) on this machine right now"
    )
    overhead = (medians["warden bwrap"] - plain) * 1000
    verdict = "met" if overhead < 100 else "NOT met"
    print(f"goal: warden bwrap adds < 100 ms over plain bwrap: {overhead:.1f} ms ({verdict})")
    if "bwrap, user, venv-user" in medians:
        extra = (medians["bwrap, user, venv-user"] - medians["bwrap, root, venv-user"]) * 1000
        print(f"ordinary user vs root, same interpreter: {extra:+.1f} ms to the first byte")

    # The real tool server boots for longer than the warden imports Trio, which the warden does
    # while the sandbox boots: what remains is the warden's work before it starts bwrap.
    real: dict[str, list[float]] = {"plain bwrap": [], "warden bwrap": []}
    for _ in range(runs):
        real["plain bwrap"].append(measure(plain_bwrap_tool_server, HTTP_PROBE))
        real["warden bwrap"].append(measure(warden_tool_server, HTTP_PROBE))
    plain_real = statistics.median(real["plain bwrap"])
    warden_real = statistics.median(real["warden bwrap"])
    print(f"with the real tool server (trio_sandbox.tools --plain-http), median of {runs} runs:")
    print(f"  plain bwrap {plain_real * 1000:.1f} ms, warden bwrap {warden_real * 1000:.1f} ms:")
    extra = (warden_real - plain_real) * 1000
    verdict = "met" if extra < 100 else "NOT met"
    print(f"  the warden adds {extra:.1f} ms ({warden_real / plain_real:.2f}x) — goal {verdict}")


if __name__ == "__main__":
    main()
