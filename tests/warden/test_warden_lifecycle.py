"""The warden's life cycle with real processes: output and status forwarding, published
ports, SIGINT and SIGKILL of the warden leaving nothing behind, volumes, back end choice."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from warden_harness import (
    HANG_GUARD_SECONDS,
    PYTHON,
    WARDEN,
    free_port,
    launcher_env,
    live_pids_with,
    port_is_free,
    unique_marker,
    wait_gone,
    wrap,
)

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

# Echo server: binds the sandbox's own loopback, says so on stdout, starts a background
# grandchild (`sleep MARKER`) that must die with the sandbox.
ECHO_SERVER = r"""
import socket, subprocess, sys
subprocess.Popen(["sleep", sys.argv[1]], start_new_session=True)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 8080))
server.listen()
print("listening", flush=True)
try:
    while True:
        client, _ = server.accept()
        with client:
            while data := client.recv(65536):
                client.sendall(data)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


@asynccontextmanager
async def running_warden(
    options: Sequence[str], image: str, command: Sequence[str]
) -> AsyncIterator[trio.Process]:
    """The warden running `command`, once it printed its first line (the server is bound)."""
    async with trio.open_nursery() as nursery:
        argv = [*WARDEN, *options, image, "--", *command]
        run = functools.partial(trio.run_process, argv, stdout=subprocess.PIPE, check=False)
        warden: trio.Process = await nursery.start(run)
        assert warden.stdout is not None
        first_line = b""
        with trio.fail_after(HANG_GUARD_SECONDS):
            while not first_line.endswith(b"\n"):
                chunk = await warden.stdout.receive_some()
                assert chunk, "the warden ended before the command was ready"
                first_line += chunk
        assert first_line == b"listening\n"
        with trio.fail_after(HANG_GUARD_SECONDS):
            yield warden
        nursery.cancel_scope.cancel()


async def echo_through(port: int, payload: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(payload)
        await stream.send_eof()
        received = b""
        while chunk := await stream.receive_some():
            received += chunk
    return received


@needs_bwrap
async def test_output_and_exit_status_are_forwarded() -> None:
    result = await wrap(command=["sh", "-c", "printf 'out\\nput'; printf err >&2; exit 7"])
    assert (result.returncode, result.stdout, result.stderr) == (7, b"out\nput", b"err")


@needs_bwrap
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGKILL])
async def test_published_port_and_nothing_left_after_warden_stops(
    stop_signal: signal.Signals,
) -> None:
    """The port is served from the sandbox's own loopback; after SIGINT (status 130) or
    SIGKILL of the warden no process, grandchild, forwarder or listening socket is left."""
    port, marker = free_port(), unique_marker()
    options = ["-p", f"127.0.0.1:{port}:8080"]
    async with running_warden(options, "host", [PYTHON, "-c", ECHO_SERVER, marker]) as warden:
        payload = os.urandom(200_000)
        assert await echo_through(port, payload) == payload
        sandbox_pids = live_pids_with(marker)
        assert len(sandbox_pids) >= 4  # bwrap, its init, the server, the sleeping grandchild
        warden.send_signal(stop_signal)
        status = await warden.wait()
        await wait_gone(sandbox_pids)  # SIGKILL: the kernel delivers the parent-death signals
    assert status == (130 if stop_signal == signal.SIGINT else -signal.SIGKILL)
    assert live_pids_with(marker) == []
    assert port_is_free(port)
    with pytest.raises(OSError, match="connect"):
        await trio.open_tcp_stream("127.0.0.1", port)


@needs_bwrap
async def test_sigint_reaps_everything_before_the_warden_exits() -> None:
    """SIGINT reaches the command (bwrap forwards no signals), and the warden only exits
    once every sandbox process is gone."""
    port, marker = free_port(), unique_marker()
    options = ["-p", f"127.0.0.1:{port}:8080"]
    async with running_warden(options, "host", [PYTHON, "-c", ECHO_SERVER, marker]) as warden:
        warden.send_signal(signal.SIGINT)
        assert await warden.wait() == 130
        assert live_pids_with(marker) == []
        assert warden.stdout is not None
        rest = b""
        while chunk := await warden.stdout.receive_some():
            rest += chunk
    assert rest == b"interrupted\n"  # the command itself got the SIGINT and could clean up


@needs_bwrap
async def test_background_processes_die_with_the_sandbox() -> None:
    """The command exits at once; the daemon it left behind must not outlive the sandbox."""
    marker = unique_marker()
    script = f"setsid sleep {marker} >/dev/null 2>&1 & nohup sleep {marker} >/dev/null 2>&1 &"
    result = await wrap(command=["sh", "-c", script + " echo started"])
    assert (result.returncode, result.stdout) == (0, b"started\n")
    assert live_pids_with(marker) == []


@needs_bwrap
async def test_named_volume_is_created_once_and_kept(tmp_path: Path) -> None:
    env = launcher_env(XDG_DATA_HOME=str(tmp_path))
    first = await wrap("-v", "cache:/cache", command=["sh", "-c", "echo 1 >> /cache/n"], env=env)
    second = await wrap("-v", "cache:/cache", command=["cat", "/cache/n"], env=env)
    assert (first.returncode, second.returncode, second.stdout) == (0, 0, b"1\n")
    assert (tmp_path / "trio-sandbox" / "volumes" / "cache" / "n").read_text() == "1\n"


@needs_bwrap
async def test_missing_bind_volume_is_skipped_with_a_note(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    result = await wrap("-v", f"{missing}:/absent", command=["sh", "-c", "test ! -e /absent"])
    assert result.returncode == 0
    assert b"skipping volume" in result.stderr


@needs_bwrap
async def test_home_relative_volume(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a").write_text("from home")
    env = launcher_env(HOME=str(tmp_path))
    result = await wrap("-v", "~/notes:/notes:ro", command=["cat", "/notes/a"], env=env)
    assert (result.returncode, result.stdout) == (0, b"from home")


@needs_bwrap
async def test_workdir_and_env() -> None:
    result = await wrap(
        "--workdir",
        "/tmp",
        "--env",
        "GREETING=hi there",
        command=["sh", "-c", 'pwd; echo "$GREETING"'],
    )
    assert (result.returncode, result.stdout) == (0, b"/tmp\nhi there\n")


async def test_process_backend_warns_loudly() -> None:
    result = await wrap("--backend", "process", command=["sh", "-c", "echo out; exit 3"])
    assert (result.returncode, result.stdout) == (3, b"out\n")
    assert b"NOTHING IS ISOLATED" in result.stderr


async def test_process_backend_relays_a_published_port() -> None:
    port, marker = free_port(), unique_marker()
    options = ["--backend", "process", "-p", f"127.0.0.1:{port}:8080"]
    async with running_warden(options, "host", [PYTHON, "-c", ECHO_SERVER, marker]) as warden:
        assert await echo_through(port, b"ping") == b"ping"
        warden.send_signal(signal.SIGINT)
        assert await warden.wait() == 130
    for pid in live_pids_with(marker):  # the process back end promises nothing for daemons
        os.kill(pid, signal.SIGKILL)


async def test_auto_never_falls_back_to_no_isolation(tmp_path: Path) -> None:
    """Without bwrap (and no container engine on PATH) `auto` refuses to run."""
    python_dir = os.path.dirname(PYTHON)
    env = launcher_env(PATH=f"{tmp_path}:{python_dir}")
    marker = tmp_path / "ran"
    result = await wrap(command=["/bin/touch", str(marker)], env=env)
    assert result.returncode == 125
    assert b"bubblewrap" in result.stderr
    assert not marker.exists()


@needs_bwrap
async def test_sandbox_outlives_idle_worker_threads() -> None:
    """bwrap's parent-death signal follows the *thread* that forked it; Trio retires idle
    worker threads after 10 s, so the warden must fork from its main thread. (This test
    takes 11 s of real time: the trap only shows after Trio's idle timeout.)"""
    result = await wrap(command=["sh", "-c", "sleep 11; echo alive"])
    assert (result.returncode, result.stdout) == (0, b"alive\n")
