"""Making the user namespace that id-maps a root sandbox's host trees, and saying why it cannot."""

from __future__ import annotations

import errno
import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_sandbox.warden.bwrap import _idmap

_UNSHARE_X86_64 = 272
_SECCOMP_RET_ERRNO = 0x00050000
_SECCOMP_RET_ALLOW = 0x7FFF0000


def _refusing_unshare(code: int) -> str:
    """Python source that makes this process's unshare() fail with ``code`` from now on."""
    program = b"".join(
        struct.pack("<HBBI", *insn)
        for insn in (
            (0x20, 0, 0, 0),  # load the system call's number
            (0x15, 0, 1, _UNSHARE_X86_64),
            (0x06, 0, 0, _SECCOMP_RET_ERRNO | code),
            (0x06, 0, 0, _SECCOMP_RET_ALLOW),
        )
    )
    return textwrap.dedent(
        f"""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        program = ctypes.create_string_buffer({program!r})
        class Prog(ctypes.Structure):
            _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))
        prog = Prog({len(program) // 8}, ctypes.addressof(program))
        assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
        assert libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0  # PR_SET_SECCOMP, FILTER
        """
    )


def _idmap_where_unshare_fails(code: int) -> str:
    script = _refusing_unshare(code) + textwrap.dedent(
        """
        from trio_sandbox.warden.bwrap import _idmap
        attempts = []
        once = _idmap._user_namespace_once
        def counted(uid, gid):
            attempts.append(uid)
            return once(uid, gid)
        _idmap._user_namespace_once = counted
        try:
            _idmap.idmap_trees(["/usr"], uid=0, gid=0, also_bound=[])
        except OSError as exc:
            print(len(attempts), type(exc).__name__, exc.errno, exc.strerror)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the test's filter is x86_64's")
def test_a_refused_namespace_is_reported_with_unshares_reason() -> None:
    assert _idmap_where_unshare_fails(errno.EPERM) == (
        "1 IdmapUnavailableError 1 cannot create a user namespace for the id map:"
        " unshare(CLONE_NEWUSER): Operation not permitted"
    )


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the test's filter is x86_64's")
def test_a_lasting_shortage_is_reported_once_the_attempts_run_out() -> None:
    assert _idmap_where_unshare_fails(errno.ENOMEM) == (
        "3 IdmapUnavailableError 12 cannot create a user namespace for the id map:"
        " unshare(CLONE_NEWUSER): Cannot allocate memory"
    )


def test_a_transient_failure_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes: list[OSError | int] = [
        OSError(errno.ENOMEM, "no memory"),
        _idmap._unshare_failure(b"", -signal.SIGKILL),
        7,
    ]

    def once(uid: int, gid: int) -> int:
        outcome = outcomes.pop(0)
        if isinstance(outcome, OSError):
            raise outcome
        return outcome

    monkeypatch.setattr(_idmap, "_user_namespace_once", once)
    assert _idmap._user_namespace(0, 0) == 7
    assert outcomes == []


def test_a_lasting_failure_is_not_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def once(uid: int, gid: int) -> int:
        calls.append(uid)
        raise OSError(errno.ENOSPC, "over the limit")

    monkeypatch.setattr(_idmap, "_user_namespace_once", once)
    with pytest.raises(OSError, match="over the limit"):
        _idmap._user_namespace(0, 0)
    assert calls == [0]


def test_a_helper_that_ends_without_a_report_is_described() -> None:
    killed = _idmap._unshare_failure(b"", -signal.SIGKILL)
    assert killed.errno is None  # no errno to go by, none made up
    assert str(killed).endswith("its helper process killed by signal 9 before reporting")
    exited = _idmap._unshare_failure(b"", 3)
    assert str(exited).endswith("its helper process exited with status 3 before reporting")


def test_a_helper_that_cannot_start_leaves_no_descriptor_open(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_idmap, "HELPER_PYTHON", (str(tmp_path / "no-python"),))
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError, match="cannot start the id map's helper"):
        _idmap._user_namespace(0, 0)
    assert set(os.listdir("/proc/self/fd")) == before


# What makes every forked child of a process start a thread: OpenTelemetry's SDK restarts its
# export thread in each (a forked helper could not unshare a user namespace: EINVAL, which failed
# CI twice), and the same done by hand, should the SDK ever start it lazily.
THREAD_IN_EVERY_FORK = {
    "OpenTelemetry's span processor": """
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
        processor = BatchSpanProcessor(ConsoleSpanExporter())
        """,
    "an at-fork handler": """
        import os, threading, time
        os.register_at_fork(
            after_in_child=lambda: threading.Thread(target=time.sleep, args=(5,)).start()
        )
        """,
}


@pytest.mark.skipif(os.geteuid() != 0, reason="id-mapped mounts need root")
@pytest.mark.parametrize("threads", sorted(THREAD_IN_EVERY_FORK))
def test_a_process_whose_forks_start_a_thread_still_gets_its_id_map(threads: str) -> None:
    script = textwrap.dedent(THREAD_IN_EVERY_FORK[threads]) + textwrap.dedent(
        """
        import os
        from trio_sandbox.warden.bwrap import _idmap
        trees = _idmap.idmap_trees(["/usr"], uid=0, gid=0, also_bound=[])
        print(sorted(trees.sources))
        trees.close()
        os._exit(0)  # not waiting for the sleeping thread
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['/usr']"


@given(st.sampled_from(sorted(errno.errorcode)))
def test_any_reported_errno_keeps_its_number_and_reason(code: int) -> None:
    error = _idmap._unshare_failure(str(code).encode(), 0)
    assert error.errno == code
    assert str(error.strerror).endswith(os.strerror(code))
