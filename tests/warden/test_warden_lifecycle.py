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

from tests.support.sandbox_users import SandboxUser, ordinary_user
from tests.warden.warden_harness import (
    HANG_GUARD_SECONDS,
    PYTHON,
    ROOT_OR_SELF,
    free_port,
    live_pids_with,
    port_is_free,
    read_host_file,
    unique_marker,
    wait_gone,
    warden_argv,
    wrap,
)
from trio_sandbox.warden import _netns

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
    options: Sequence[str], image: str, command: Sequence[str], user: SandboxUser | None = None
) -> AsyncIterator[trio.Process]:
    """The warden running `command`, once it printed its first line (the server is bound)."""
    user = user or ROOT_OR_SELF
    async with trio.open_nursery() as nursery:
        argv = [*warden_argv(user, *options), image, "--", *command]
        run = functools.partial(
            trio.run_process, argv, stdout=subprocess.PIPE, check=False, env=user.env()
        )
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
    stop_signal: signal.Signals, sandbox_user: SandboxUser
) -> None:
    """The port is served from the sandbox's own loopback (through the namespace helper, for
    root and for an ordinary user); after SIGINT (status 130) or SIGKILL of the warden no
    process, grandchild, helper, forwarder or listening socket is left."""
    port, marker = free_port(), unique_marker()
    options = ["-p", f"127.0.0.1:{port}:8080"]
    command = [sandbox_user.python, "-c", ECHO_SERVER, marker]
    async with running_warden(options, "host", command, sandbox_user) as warden:
        payload = os.urandom(200_000)
        assert await echo_through(port, payload) == payload
        sandbox_pids = live_pids_with(marker) + namespace_helpers_of(warden.pid)
        # The warden and its namespace helper, bwrap, its init, the server, the grandchild.
        assert len(sandbox_pids) >= 6
        warden.send_signal(stop_signal)
        status = await warden.wait()
        await wait_gone(sandbox_pids)  # SIGKILL: the kernel delivers the parent-death signals
    assert status == (130 if stop_signal == signal.SIGINT else -signal.SIGKILL)
    assert live_pids_with(marker) == []
    assert port_is_free(port)
    with pytest.raises(OSError, match="connect"):
        await trio.open_tcp_stream("127.0.0.1", port)


@needs_bwrap
async def test_sigint_reaps_everything_before_the_warden_exits(sandbox_user: SandboxUser) -> None:
    """SIGINT reaches the command (bwrap forwards no signals), and the warden only exits
    once every sandbox process is gone."""
    port, marker = free_port(), unique_marker()
    options = ["-p", f"127.0.0.1:{port}:8080"]
    command = [sandbox_user.python, "-c", ECHO_SERVER, marker]
    async with running_warden(options, "host", command, sandbox_user) as warden:
        warden.send_signal(signal.SIGINT)
        assert await warden.wait() == 130
        assert live_pids_with(marker) == []
        assert warden.stdout is not None
        rest = b""
        while chunk := await warden.stdout.receive_some():
            rest += chunk
    assert rest == b"interrupted\n"  # the command itself got the SIGINT and could clean up


@needs_bwrap
async def test_a_stop_signal_as_the_sandbox_starts_still_reaps_it(
    sandbox_user: SandboxUser,
) -> None:
    """SIGTERM as soon as the sandbox's command runs: bubblewrap was launched before the warden
    imported Trio, so the signal may come while the warden only records signals. Either way the
    warden stops the sandbox, reaps it and says 143."""
    marker = unique_marker()
    command = ["sh", "-c", f"echo started; exec sleep {marker}"]
    argv = [*warden_argv(sandbox_user), "host", "--", *command]
    async with trio.open_nursery() as nursery:
        run = functools.partial(
            trio.run_process, argv, stdout=subprocess.PIPE, check=False, env=sandbox_user.env()
        )
        warden: trio.Process = await nursery.start(run)
        assert warden.stdout is not None
        with trio.fail_after(HANG_GUARD_SECONDS):
            assert await warden.stdout.receive_some() == b"started\n"
            warden.send_signal(signal.SIGTERM)
            assert await warden.wait() == 128 + signal.SIGTERM
    assert live_pids_with(marker) == []


@needs_bwrap
async def test_background_processes_die_with_the_sandbox(sandbox_user: SandboxUser) -> None:
    """The command exits at once; the daemon it left behind must not outlive the sandbox."""
    marker = unique_marker()
    script = f"setsid sleep {marker} >/dev/null 2>&1 & nohup sleep {marker} >/dev/null 2>&1 &"
    result = await wrap(command=["sh", "-c", script + " echo started"], user=sandbox_user)
    assert (result.returncode, result.stdout) == (0, b"started\n")
    assert live_pids_with(marker) == []


@needs_bwrap
async def test_named_volume_is_created_once_and_kept(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    """Kept in the user's data directory, owned by the sandbox user (root: uid 65534 without a
    workspace), so the sandbox can write it."""
    env = {"XDG_DATA_HOME": str(workspace)}
    volume = ["-v", "cache:/cache"]
    first = await wrap(
        *volume, command=["sh", "-c", "echo 1 >> /cache/n"], env=env, user=sandbox_user
    )
    second = await wrap(*volume, command=["cat", "/cache/n"], env=env, user=sandbox_user)
    assert (first.returncode, second.returncode, second.stdout) == (0, 0, b"1\n"), first.stderr
    stored = workspace / "trio-sandbox" / "volumes" / "cache"
    assert (stored / "n").read_text() == "1\n"
    expected = (65534, 65534) if sandbox_user.is_root else (sandbox_user.uid, sandbox_user.gid)
    assert (stored.stat().st_uid, stored.stat().st_gid) == expected


@needs_bwrap
async def test_missing_bind_volume_is_skipped_with_a_note(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    missing = workspace / "absent"
    result = await wrap(
        "-v", f"{missing}:/absent", command=["sh", "-c", "test ! -e /absent"], user=sandbox_user
    )
    assert result.returncode == 0
    assert b"skipping volume" in result.stderr


@needs_bwrap
async def test_home_relative_volume(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a").write_text("from home")
    env = {"HOME": str(tmp_path)}
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
    env = {"PATH": f"{tmp_path}:{python_dir}"}
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


NO_USER_NAMESPACES = Path(__file__).with_name("without_user_namespaces.py")


@needs_bwrap
async def test_an_ordinary_user_without_user_namespaces_is_told_what_to_change() -> None:
    """bubblewrap cannot make a user namespace: the warden says which setting refuses it."""
    user = ordinary_user()
    argv = user.command(
        user.python,
        str(NO_USER_NAMESPACES),
        *[user.python, "-m", "trio_sandbox.warden", "wrap", "host", "--", "true"],
    )
    with trio.fail_after(HANG_GUARD_SECONDS):
        done = await trio.run_process(
            argv, capture_stdout=True, capture_stderr=True, check=False, env=user.env()
        )
    assert done.returncode != 0
    assert b"/proc/sys/user/max_user_namespaces is 0" in done.stderr, done.stderr
    assert b"sysctl user.max_user_namespaces=" in done.stderr


@needs_bwrap
async def test_backend_bwrap_without_bubblewrap_names_the_package(tmp_path: Path) -> None:
    python_dir = os.path.dirname(PYTHON)
    result = await wrap(
        "--backend", "bwrap", command=["true"], env={"PATH": f"{tmp_path}:{python_dir}"}
    )
    assert result.returncode == 125
    assert b"apt-get install bubblewrap" in result.stderr


def namespace_helpers_of(warden_pid: int) -> list[int]:
    """The warden's namespace helper: its child running ``_netns.py`` for it."""
    found = []
    for pid in live_pids_with(f"{_netns.__file__}\0{warden_pid}\0"):
        stat = read_host_file(f"/proc/{pid}/stat").rpartition(b")")[2].split()
        if int(stat[1]) == warden_pid:
            found.append(pid)
    return found


@needs_bwrap
async def test_a_dead_namespace_helper_stops_the_sandbox(sandbox_user: SandboxUser) -> None:
    """Without its helper the warden can open no new connection into the sandbox: it stops the
    sandbox and exits 125, so that whoever runs it starts a new one (the host respawns)."""
    port, marker = free_port(), unique_marker()
    options = ["-p", f"127.0.0.1:{port}:8080"]
    command = [sandbox_user.python, "-c", ECHO_SERVER, marker]
    async with running_warden(options, "host", command, sandbox_user) as warden:
        helpers = namespace_helpers_of(warden.pid)
        assert len(helpers) == 1, helpers
        sandbox_pids = [pid for pid in live_pids_with(marker) if pid != warden.pid]
        os.kill(helpers[0], signal.SIGKILL)
        assert await warden.wait() == 125
        await wait_gone(sandbox_pids)
    assert port_is_free(port)


async def test_a_command_over_before_its_port_is_published_keeps_its_status(
    sandbox_user: SandboxUser,
) -> None:
    """A command that exits before the warden enters its namespaces is not a warden failure:
    its own status comes back (it was 125 when entering the gone namespace raised)."""
    for _ in range(5):
        result = await wrap(
            "-p", f"127.0.0.1:{free_port()}:8080", command=["sh", "-c", "exit 3"], user=sandbox_user
        )
        assert result.returncode == 3, result.stderr
