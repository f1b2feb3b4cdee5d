"""Sockets inside the sandbox's network namespace, for root and for an ordinary user alike.

The sandbox has no network but its own loopback. To publish its port the warden makes, for each
connection, a socket that belongs to the sandbox's network namespace and connects it there; once
made, it is an ordinary socket of the warden (a socket keeps the namespace it was created in).

Entering that namespace takes CAP_SYS_ADMIN over it. As root that is the warden's own; as an
ordinary user it is had by entering the sandbox's user namespace first, which the user owns — and
a process can only enter a user namespace while it has a single thread, which a Trio program
cannot promise. So the warden forks a helper before it imports Trio (single-threaded, standard
library only). Once the sandbox exists, the helper enters its namespaces with one
``setns(pidfd, CLONE_NEWUSER | CLONE_NEWNET)`` (Linux 5.8+; two separate calls fail with EPERM
here) and from then on hands out sockets over a unix socket pair, as SCM_RIGHTS messages. The
helper exits when the warden closes its end, and dies with the warden otherwise.

The protocol, one request at a time: ``b"N"`` with a pidfd attached → enter that process's
namespaces → ``b"0"`` or an errno as text; ``b"4"`` / ``b"6"`` → a new TCP socket (IPv4 / IPv6)
attached to a ``b"S"`` reply, or an errno as text.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
_PR_SET_PDEATHSIG = 1


@dataclass(eq=False, slots=True)
class NetnsHelper:
    """The warden's end of a forked helper process."""

    pid: int
    channel: socket.socket

    def close(self) -> None:
        """Close our end (the helper exits) and reap the helper."""
        self.channel.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _entry_flags(target_pid: int) -> int:
    """CLONE_NEWNET, plus CLONE_NEWUSER when the target lives in another user namespace."""
    own = os.stat("/proc/self/ns/user")
    theirs = os.stat(f"/proc/{target_pid}/ns/user")
    same = (own.st_dev, own.st_ino) == (theirs.st_dev, theirs.st_ino)
    return CLONE_NEWNET if same else CLONE_NEWNET | CLONE_NEWUSER


def _serve(channel: socket.socket) -> None:
    """The helper's loop (in the forked child)."""
    libc = ctypes.CDLL(None, use_errno=True)
    while True:
        try:
            message, fds, _flags, _address = socket.recv_fds(channel, 16, 1)
        except OSError:
            return
        if not message:
            return
        try:
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
        except OSError as exc:
            channel.sendall(str(exc.errno or 0).encode())


def _pid_of(pidfd: int) -> int:
    """The pid behind a pidfd (its fdinfo says), to read that process's user namespace."""
    with open(f"/proc/self/fdinfo/{pidfd}") as info:
        for line in info:
            if line.startswith("Pid:"):
                return int(line.split()[1])
    raise OSError(3, "the process behind the pidfd is gone")


def fork_netns_helper() -> NetnsHelper:
    """Fork the helper. Call it while the process is single-threaded (before Trio)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; covered by the tests that publish ports
        try:
            ours.close()
            # Nothing of the warden's but the channel: the helper enters the sandbox's
            # namespaces, and the warden's descriptors (its report channel) stay out of them.
            keep = theirs.fileno()
            os.closerange(3, keep)
            os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() == 1:
                os._exit(0)  # the warden is gone already
            # The warden handles these; the helper just dies with it.
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_IGN)
            _serve(theirs)
        finally:
            sys.stdout.flush()
            os._exit(0)
    theirs.close()
    return NetnsHelper(pid, ours)
