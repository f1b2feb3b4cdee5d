"""Data handed to a child through an anonymous in-memory file rather than its command line
(which every local user can read in /proc/PID/cmdline) or a file on disk."""

from __future__ import annotations

import fcntl
import os

_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def memfd_holding(name: str, data: bytes) -> int:
    """A sealed memfd holding ``data``, positioned at 0, close-on-exec (pass it on explicitly,
    as ``pass_fds`` does); the caller closes it."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
