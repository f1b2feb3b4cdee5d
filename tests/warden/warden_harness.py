"""Drive the real warden CLI as a subprocess, and look at the host's processes from outside."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio

from tests.support.sandbox_users import SandboxUser, this_process_user

WARDEN = (sys.executable, "-m", "trio_sandbox.warden", "wrap")
# Every escape attempt below is ordinary Python run by the interpreter that runs the warden,
# which the `host` image binds read-only (under /.trio-sandbox when it is not under /usr);
# printing one JSON object lets the test assert on results.
PYTHON = sys.executable
# These tests drive real processes, so virtual time cannot apply; this bound only turns a
# hang (a protection that fails by leaving a process alive) into a failure. Nothing is timed.
HANG_GUARD_SECONDS = 60
# Whoever runs the tests, for the tests that are not about the kind of user.
ROOT_OR_SELF = this_process_user()


def warden_argv(user: SandboxUser, *options: str) -> list[str]:
    """The warden's `wrap` as ``user`` runs it."""
    return user.python_module("trio_sandbox.warden", "wrap", *options)


async def wrap(
    *options: str,
    command: Sequence[str],
    image: str = "host",
    env: Mapping[str, str] | None = None,
    user: SandboxUser | None = None,
    pass_fds: Sequence[int] = (),
) -> subprocess.CompletedProcess[bytes]:
    """Run the warden as ``user`` (default: whoever runs the tests); ``env`` adds variables;
    ``pass_fds``: descriptors it inherits (``--inject-fd``)."""
    user = user or ROOT_OR_SELF
    with trio.fail_after(HANG_GUARD_SECONDS):
        return await trio.run_process(
            [*warden_argv(user, *options), image, "--", *command],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=user.env(env),
            pass_fds=pass_fds,
        )


async def probe(
    code: str, *options: str, env: Mapping[str, str] | None = None, user: SandboxUser | None = None
) -> object:
    """Run `code` with the sandbox's python; it must print one JSON document last."""
    user = user or ROOT_OR_SELF
    result = await wrap(*options, command=[user.python, "-c", code], env=env, user=user)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


def unique_marker() -> str:
    """A `sleep` duration no other process on this machine uses: a findable command line."""
    return f"{random.randrange(10**6, 10**7)}.{random.randrange(10**3, 10**4)}"


def live_pids_with(marker: str) -> list[int]:
    """Host pids (zombies excluded: they hold nothing) whose command line contains marker."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            state = Path(f"/proc/{name}/stat").read_bytes().rpartition(b")")[2].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != b"Z":
            found.append(int(name))
    return found


async def wait_gone(pids: Sequence[int]) -> None:
    """Wait, without polling, until every pid has exited (a pidfd turns readable). On a hang
    the survivors are killed, so that a failing test leaves nothing behind either."""
    try:
        with trio.fail_after(HANG_GUARD_SECONDS):
            for pid in pids:
                try:
                    pidfd = os.pidfd_open(pid)
                except ProcessLookupError:
                    continue
                try:
                    await trio.lowlevel.wait_readable(pidfd)
                finally:
                    trio.lowlevel.notify_closing(pidfd)
                    os.close(pidfd)
    except trio.TooSlowError:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        raise


def port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def read_host_file(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def host_path_exists(path: str) -> bool:
    return os.path.exists(path)


def start_host_sleep(marker: str) -> subprocess.Popen[bytes]:
    """A host process the sandbox must not see."""
    return subprocess.Popen(["sleep", marker])


def quote(text: str) -> str:
    return json.dumps(text)
