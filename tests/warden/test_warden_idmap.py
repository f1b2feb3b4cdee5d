"""Making the user namespace that id-maps a root sandbox's host trees, and saying why it cannot."""

from __future__ import annotations

import errno
import os
import signal
import struct
import subprocess
import sys
import textwrap

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
        _idmap._unshare_failure(b"", _status_of("signal")),
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


def _status_of(end: str) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        if end == "signal":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(3)
    return os.waitpid(pid, 0)[1]


def test_a_helper_that_ends_without_a_report_is_described() -> None:
    killed = _idmap._unshare_failure(b"", _status_of("signal"))
    assert killed.errno is None  # no errno to go by, none made up
    assert str(killed).endswith("its helper process killed by signal 9 before reporting")
    exited = _idmap._unshare_failure(b"", _status_of("exit"))
    assert str(exited).endswith("its helper process exited with status 3 before reporting")


def test_a_failed_fork_leaves_no_descriptor_open(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError, match="temporarily unavailable"):
        _idmap._user_namespace(0, 0)  # tried three times: EAGAIN is transient
    assert set(os.listdir("/proc/self/fd")) == before


@given(st.sampled_from(sorted(errno.errorcode)))
def test_any_reported_errno_keeps_its_number_and_reason(code: int) -> None:
    error = _idmap._unshare_failure(str(code).encode(), 0)
    assert error.errno == code
    assert str(error.strerror).endswith(os.strerror(code))
