"""The podman back end on a local image built without a registry (.ci/install-podman).

Runs wherever podman and that image exist (CI installs both); elsewhere it is skipped."""

from __future__ import annotations

import functools
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
import trio

from tests.warden.test_warden_lifecycle import ECHO_SERVER, echo_through
from tests.warden.warden_harness import (
    WARDEN,
    free_port,
    live_pids_with,
    port_is_free,
    unique_marker,
    wrap,
)

IMAGE = "localhost/trio-sandbox-test:latest"


def _image_present() -> bool:
    if shutil.which("podman") is None:
        return False
    probe = subprocess.run(["podman", "image", "exists", IMAGE], check=False)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _image_present(), reason=f"needs podman and {IMAGE} (.ci/install-podman)"
)


def container_names() -> set[str]:
    listing = subprocess.run(
        ["podman", "ps", "--all", "--format", "{{.Names}}"],
        capture_output=True,
        check=True,
    )
    return set(listing.stdout.decode().split())


async def test_podman_forwards_output_status_env_and_volumes(tmp_path: Path) -> None:
    await trio.Path(tmp_path / "ro").mkdir()
    await trio.Path(tmp_path / "ro" / "file").write_text("read me")
    await trio.Path(tmp_path / "rw").mkdir()
    script = (
        'echo "$GREETING"; cat /ro/file; echo; '
        "echo x > /ro/file 2>/dev/null && echo ro-written; "
        "echo kept > /rw/file; echo x > /usr/escape 2>/dev/null && echo usr-written; "
        "echo oops >&2; exit 5"
    )
    result = await wrap(
        "--backend",
        "podman",
        *["--env", "GREETING=hello", "-v", f"{tmp_path}/ro:/ro:ro", "-v", f"{tmp_path}/rw:/rw"],
        command=["sh", "-c", script],
        image=IMAGE,
    )
    assert (result.returncode, result.stdout) == (5, b"hello\nread me\n")
    assert result.stderr.endswith(b"oops\n")
    assert await trio.Path(tmp_path / "rw" / "file").read_text() == "kept\n"


@pytest.mark.parametrize("network", ["none", "allow"])
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGKILL])
async def test_podman_published_port_and_cleanup(stop_signal: signal.Signals, network: str) -> None:
    """The port is relayed into the container's own network namespace (--network none, and
    allow, where the container is created, initialised and then started); after SIGINT (status
    130) or SIGKILL of the warden the container is removed."""
    before = container_names()
    directories_before = engine_directories()
    port, marker = free_port(), unique_marker()
    argv = [*WARDEN, "--network", network, "-p", f"127.0.0.1:{port}:8080", IMAGE, "--"]
    argv += ["python3", "-c", ECHO_SERVER, marker]
    async with trio.open_nursery() as nursery:
        run = functools.partial(trio.run_process, argv, stdout=subprocess.PIPE, check=False)
        warden: trio.Process = await nursery.start(run)
        assert warden.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            chunk = await warden.stdout.receive_some()
            assert chunk, "the warden ended before the server was ready"
            line += chunk
        assert await echo_through(port, b"ping" * 1000) == b"ping" * 1000
        (name,) = container_names() - before
        guards = live_pids_with(f"rm --force {name}") or live_pids_with(name)
        warden.send_signal(stop_signal)
        status = await warden.wait()
        if stop_signal == signal.SIGKILL:
            # The guard watches the warden's pipe and removes the container once it is gone.
            from tests.warden.warden_harness import wait_gone

            await wait_gone([pid for pid in guards if b"_ignored" in _cmdline(pid)])
    assert status == (130 if stop_signal == signal.SIGINT else -signal.SIGKILL)
    assert name not in container_names()
    assert live_pids_with(marker) == []
    assert port_is_free(port)
    assert engine_directories() == directories_before  # the engine's working directory too


def engine_directories() -> set[str]:
    """The warden runs the engine in a temporary directory of its own (conmon's `oom` file)."""
    return {path.name for path in Path(tempfile.gettempdir()).glob("trio-sandbox-engine-*")}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


async def test_podman_limits_memory_pids_and_tmp() -> None:
    """The same limits, enforced by the engine: a command over the memory limit is killed and the
    container's own cgroup counts it; forks stop at the pids limit; /tmp fills up."""
    fork_bomb = (
        "import errno, os, time\n"
        "children = []\n"
        "try:\n"
        "    for _ in range(200):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(1)\n"
        "            os._exit(0)\n"
        "        children.append(pid)\n"
        "except OSError as exc:\n"
        "    print('stopped at', len(children), errno.errorcode[exc.errno])\n"
        "for pid in children:\n"
        "    os.waitpid(pid, 0)\n"
    )
    script = (
        "python3 -c 'x = bytearray(300 * 1024 * 1024)'; echo memory=$?;"
        " grep oom_kill /sys/fs/cgroup/memory/memory.oom_control;"
        " dd if=/dev/zero of=/tmp/f bs=1M count=32 2>&1 | grep -c 'No space';"
        ' python3 -c "$0"'
    )
    result = await wrap(
        "--backend",
        "podman",
        *["--memory", "128M", "--pids", "20", "--tmp-size", "8M"],
        command=["sh", "-c", script, fork_bomb],
        image=IMAGE,
    )
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "memory=137", lines
    # conmon's `oom` marker went to the engine's own directory, not the caller's.
    assert not (Path.cwd() / "oom").exists()
    assert "oom_kill 1" in lines, lines
    assert lines[-2] == "1", lines  # one "No space left on device"
    stopped = lines[-1].split()
    assert stopped[:2] == ["stopped", "at"], lines
    assert int(stopped[2]) < 20
    assert stopped[3] == "EAGAIN"
