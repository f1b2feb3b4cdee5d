"""Sockets inside the sandbox's network namespace, for root and for an ordinary user alike.

The sandbox has no network but its own loopback. To publish its port the warden makes, for each
connection, a socket that belongs to the sandbox's network namespace and connects it there; once
made, it is an ordinary socket of the warden (a socket keeps the namespace it was created in).

Entering that namespace takes CAP_SYS_ADMIN over it. As root that is the warden's own; as an
ordinary user it is had by entering the sandbox's user namespace first, which the user owns — and
a process can only enter a user namespace while it has a single thread, which a Trio program
cannot promise. So the warden starts a helper: this file, run by a fresh interpreter (standard
library only). Not a fork: os.fork runs the at-fork handlers of whatever the warden's Python
imported (an instrumented interpreter's OpenTelemetry SDK starts its export thread in the
child), and that one thread makes entering the namespace fail. Once the sandbox exists, the
helper enters its namespaces with one ``setns(pidfd, CLONE_NEWUSER | CLONE_NEWNET)`` (Linux
5.8+; two separate calls fail with EPERM here) and from then on hands out sockets over a unix
socket pair, as SCM_RIGHTS messages. The helper exits when the warden closes its end, and dies
with the warden otherwise.

The protocol, one request at a time: ``b"N"`` with a pidfd attached → enter that process's
namespaces → ``b"0"`` or an errno as text; ``b"4"`` / ``b"6"`` → a new TCP socket (IPv4 / IPv6)
attached to a ``b"S"`` reply, or an errno as text.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
_PR_SET_PDEATHSIG = 1
# How the warden's helpers are started: a fresh interpreter that imports no site (so no
# sitecustomize or .pth hook of the warden's environment) and puts neither the script's directory
# nor the current one on sys.path; PYTHONHOME still counts.
HELPER_PYTHON = (sys.executable, "-S", "-s", "-P")


@dataclass(eq=False, slots=True)
class NetnsHelper:
    """The warden's end of the helper process."""

    process: subprocess.Popen[bytes]
    channel: socket.socket

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        """Close our end (the helper exits) and reap the helper."""
        self.channel.close()
        self.process.wait()


def _entry_flags(target_pid: int) -> int:
    """CLONE_NEWNET, plus CLONE_NEWUSER when the target lives in another user namespace."""
    own = os.stat("/proc/self/ns/user")
    theirs = os.stat(f"/proc/{target_pid}/ns/user")
    same = (own.st_dev, own.st_ino) == (theirs.st_dev, theirs.st_ino)
    return CLONE_NEWNET if same else CLONE_NEWNET | CLONE_NEWUSER


def _serve(channel: socket.socket) -> None:
    """The helper's loop, until the warden closes its end (or is gone)."""
    libc = ctypes.CDLL(None, use_errno=True)
    while True:
        try:
            message, fds, _flags, _address = socket.recv_fds(channel, 16, 1)
        except OSError:
            return
        if not message:
            return
        try:
            _answer(channel, libc, message, fds)
        except OSError as exc:
            try:
                channel.sendall(str(exc.errno or 0).encode())
            except OSError:
                return  # the warden closed its end mid-request: nobody to answer


def _answer(channel: socket.socket, libc: ctypes.CDLL, message: bytes, fds: list[int]) -> None:
    if message == b"N" and fds:
        pidfd = fds[0]
        try:
            if libc.setns(pidfd, _entry_flags(_pid_of(pidfd))) != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
        finally:
            os.close(pidfd)
        channel.sendall(b"0")
    elif message in (b"4", b"6"):
        family = socket.AF_INET if message == b"4" else socket.AF_INET6
        made = socket.socket(family, socket.SOCK_STREAM)
        try:
            socket.send_fds(channel, [b"S"], [made.fileno()])
        finally:
            made.close()
    else:
        for fd in fds:
            os.close(fd)
        channel.sendall(b"EINVAL")


def _pid_of(pidfd: int) -> int:
    """The pid behind a pidfd (its fdinfo says), to read that process's user namespace."""
    with open(f"/proc/self/fdinfo/{pidfd}") as info:
        for line in info:
            if line.startswith("Pid:"):
                return int(line.split()[1])
    raise OSError(3, "the process behind the pidfd is gone")


def start_netns_helper() -> NetnsHelper:
    """Start the helper: this file, run by a fresh interpreter that inherits only its end of the
    channel (not the descriptor with injected secrets, whenever that is read)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        with theirs:
            process = subprocess.Popen(
                [*HELPER_PYTHON, __file__, str(os.getpid()), str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                # A terminal's Ctrl-C goes to the warden's group: the warden stops the sandbox,
                # and only then the helper.
                process_group=0,
            )
    except BaseException:
        ours.close()
        raise
    return NetnsHelper(process, ours)


def _helper_main(warden_pid: int, channel_fd: int) -> None:  # pragma: no cover - runs in the helper
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != warden_pid:
        return  # the warden is gone already
    # The warden handles these; the helper just dies with it.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    _serve(socket.socket(fileno=channel_fd))


if __name__ == "__main__":  # pragma: no cover - the helper; covered by the tests that publish
    _helper_main(int(sys.argv[1]), int(sys.argv[2]))
