"""Run a command where the kernel refuses new user namespaces, as on hosts that disable them.

``python without_user_namespaces.py CMD ARG...``: enters a user namespace of its own that maps
the caller's uid to itself, sets that namespace's ``user.max_user_namespaces`` to 0 (allowed
while the process still holds the namespace's capabilities), then execs CMD as the same,
ordinary, uid. Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import sys

CLONE_NEWUSER = 0x10000000


def main(argv: list[str]) -> None:
    uid, gid = os.getuid(), os.getgid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    with open("/proc/self/setgroups", "w") as out:
        out.write("deny")
    with open("/proc/self/uid_map", "w") as out:
        out.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as out:
        out.write(f"{gid} {gid} 1")
    with open("/proc/sys/user/max_user_namespaces", "w") as out:
        out.write("0")
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
