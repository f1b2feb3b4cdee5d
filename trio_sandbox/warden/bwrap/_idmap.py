"""Id-mapped views of the host's read-only trees, for a sandbox that bubblewrap runs as root.

A root warden runs the sandbox without a user namespace, as the workspace owner — uid 0 for a
root-owned workspace. Masking files in /etc does not cover the class: a uid-0 sandbox (with no
capabilities) still reads a 0600 root file anywhere under /usr, or in the interpreter's prefix,
as its owner. So the trees bubblewrap binds from the host (/usr, /etc, the tool server's
runtime, an image's root directory) are bound through id-mapped mounts whose map leaves out the
sandbox's own uid and gid: files the sandbox's uid owns on the host have no owner there, and
the sandbox reads every host file as "others" may. Volumes are bound as they are: files created
in a root-owned workspace stay root's on the host.

How: the warden clones each tree (``open_tree``), id-maps the clone with a user namespace that
holds only the map (``mount_setattr``), and hands the detached mounts to bubblewrap's process,
which, before it execs bubblewrap, enters a mount namespace of its own and attaches them under a
staging tmpfs (``move_mount``) that bubblewrap binds from. Nothing is mounted in the host's
namespace, and nothing is left behind. Needs Linux 5.12 and file systems that allow id-mapped
mounts (ext4, xfs, btrfs, tmpfs since 6.3, overlayfs since 5.19, ...); elsewhere the warden
warns and binds the trees as they are.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .._errors import IdmapUnavailableError
from .._netns import CLONE_NEWUSER, HELPER_PYTHON
from .._runtime import is_within

_CLONE_NEWNS = 0x00020000
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000
_OPEN_TREE_CLONE = 1
_MOUNT_ATTR_IDMAP = 0x00100000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
# x86_64 system call numbers (the warden's seccomp rules are x86_64 only too).
_OPEN_TREE = 428
_MOVE_MOUNT = 429
_MOUNT_SETATTR = 442
# The highest valid id: (uid_t) -1 is "no id".
_LAST_ID = 2**32 - 2
# Where the id-mapped trees are attached in bubblewrap's process's own mount namespace: the first
# of these that no bound path is inside of or contains (it is covered by a tmpfs there only).
_STAGING_CANDIDATES = ("/srv", "/media", "/opt", "/mnt", "/home", "/var")


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def id_map_without(own: int) -> str:
    """A uid_map/gid_map that maps every id to itself except ``own``, which stays unmapped."""
    lines = []
    if own > 0:
        lines.append(f"0 0 {own}")
    if own < _LAST_ID:
        lines.append(f"{own + 1} {own + 1} {_LAST_ID - own}")
    return "".join(f"{line}\n" for line in lines)


# Why creating the namespace may fail for a moment (memory, processes), not for good.
_TRANSIENT_ERRNOS = frozenset({errno.ENOMEM, errno.EAGAIN, errno.EINTR})
_ATTEMPTS = 3


class _HelperEnded(OSError):
    """The helper ended before it reported: no errno to go by, and a signal need not come
    again, so it counts as transient."""


def _user_namespace(uid: int, gid: int) -> int:
    """An fd of a fresh user namespace whose maps leave out ``uid`` and ``gid``."""
    for _ in range(_ATTEMPTS - 1):
        try:
            return _user_namespace_once(uid, gid)
        except OSError as exc:
            if not isinstance(exc, _HelperEnded) and exc.errno not in _TRANSIENT_ERRNOS:
                raise
    return _user_namespace_once(uid, gid)


# The helper is a fresh interpreter rather than a fork of the warden: os.fork runs the at-fork
# handlers of whatever the process has imported (OpenTelemetry's SDK starts its export thread
# in the child), and a process with a second thread cannot unshare a user namespace (EINVAL).
# It writes b"x" once the namespace exists, else unshare's errno, then waits for EOF on stdin.
_HELPER_SOURCE = f"""\
import os
try:
    os.unshare({CLONE_NEWUSER})
except AttributeError:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    report = b"x" if libc.unshare({CLONE_NEWUSER}) == 0 else str(ctypes.get_errno()).encode()
except OSError as exc:
    report = str(exc.errno).encode()
else:
    report = b"x"
os.write(1, report)
if report == b"x":
    os.read(0, 1)
"""


def _user_namespace_once(uid: int, gid: int) -> int:
    try:
        helper = subprocess.Popen(
            [*HELPER_PYTHON, "-c", _HELPER_SOURCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            process_group=0,  # out of reach of a terminal's Ctrl-C to the warden's group
        )
    except OSError as exc:
        # Its errno kept (EAGAIN is transient), its message naming what could not start.
        what = f"cannot start the id map's helper {HELPER_PYTHON[0]}: {exc.strerror}"
        raise OSError(exc.errno, what) from exc
    with helper:  # closes its stdin (it reads EOF and exits) and waits for it
        assert helper.stdout is not None
        report = os.read(helper.stdout.fileno(), 16)
        if report != b"x":
            raise _unshare_failure(report, helper.wait())
        for name, own in (("uid_map", uid), ("gid_map", gid)):
            with open(f"/proc/{helper.pid}/{name}", "w") as map_file:
                map_file.write(id_map_without(own))
        return os.open(f"/proc/{helper.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)


def _unshare_failure(report: bytes, returncode: int) -> OSError:
    """The error the helper's report (unshare's errno) or, without one, its end stands for."""
    what = "cannot create a user namespace for the id map"
    if report.isdigit():
        code = int(report)
        return OSError(code, f"{what}: unshare(CLONE_NEWUSER): {os.strerror(code)}")
    if returncode < 0:
        ended = f"killed by signal {-returncode}"
    else:
        ended = f"exited with status {returncode}"
    return _HelperEnded(f"{what}: its helper process {ended} before reporting")


def _idmapped_clone(path: str, userns_fd: int) -> int:
    """A detached, recursive clone of the tree at ``path``, id-mapped through ``userns_fd``."""
    flags = _OPEN_TREE_CLONE | os.O_CLOEXEC | _AT_RECURSIVE
    tree = _check(
        _libc.syscall(_OPEN_TREE, _AT_FDCWD, path.encode(), ctypes.c_uint(flags)),
        f"open_tree {path}",
    )
    try:
        attr = _MountAttr(_MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
        _check(
            _libc.syscall(
                _MOUNT_SETATTR,
                tree,
                b"",
                ctypes.c_uint(_AT_EMPTY_PATH | _AT_RECURSIVE),
                ctypes.byref(attr),
                ctypes.c_size_t(ctypes.sizeof(attr)),
            ),
            f"id-mapping {path}",
        )
    except BaseException:
        os.close(tree)
        raise
    return tree


def _staging_dir(bound: Sequence[str]) -> str | None:
    for candidate in _STAGING_CANDIDATES:
        if not os.path.isdir(candidate) or os.path.islink(candidate):
            continue
        if any(is_within(path, candidate) or is_within(candidate, path) for path in bound):
            continue
        return candidate
    return None


@dataclass(eq=False, slots=True)
class IdmappedTrees:
    """Detached id-mapped clones of host trees, and where bubblewrap finds them once attached."""

    staging: str
    trees: dict[str, int]  # host path -> detached mount fd (close-on-exec)

    @property
    def sources(self) -> Mapping[str, str]:
        """Host path -> the path bubblewrap binds it from instead."""
        return {path: f"{self.staging}/{index}" for index, path in enumerate(self.trees)}

    def attach(self) -> None:
        """In bubblewrap's process before exec: a mount namespace of its own,
        a tmpfs over the staging directory, each tree attached below it."""
        _check(_libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _check(_libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "making / private")
        _check(
            _libc.mount(
                b"tmpfs", self.staging.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=0700"
            ),
            f"tmpfs on {self.staging}",
        )
        for (path, tree), source in zip(self.trees.items(), self.sources.values(), strict=True):
            if stat.S_ISDIR(os.stat(path).st_mode):
                os.mkdir(source, 0o700)
            else:
                os.close(os.open(source, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            _check(
                _libc.syscall(
                    _MOVE_MOUNT,
                    tree,
                    b"",
                    _AT_FDCWD,
                    source.encode(),
                    ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH),
                ),
                f"attaching {path}",
            )

    def close(self) -> None:
        for tree in self.trees.values():
            os.close(tree)
        self.trees = {}


def idmap_trees(
    paths: Sequence[str], *, uid: int, gid: int, also_bound: Sequence[str]
) -> IdmappedTrees:
    """Id-mapped clones of ``paths`` hiding ``uid``/``gid``'s ownership (root warden only);
    ``also_bound``: the other host paths bubblewrap binds (volumes), which the staging
    directory must leave alone. Raises IdmapUnavailableError saying why it cannot."""
    staging = _staging_dir([*paths, *also_bound])
    if staging is None:
        raise IdmapUnavailableError(
            f"no free directory to stage them in (tried {', '.join(_STAGING_CANDIDATES)})"
        )
    trees: dict[str, int] = {}
    try:
        userns_fd = _user_namespace(uid, gid)
        try:
            for path in dict.fromkeys(paths):
                trees[path] = _idmapped_clone(path, userns_fd)
        finally:
            os.close(userns_fd)
    except OSError as exc:
        for tree in trees.values():
            with contextlib.suppress(OSError):
                os.close(tree)
        raise IdmapUnavailableError(exc.errno, exc.strerror or str(exc)) from None
    return IdmappedTrees(staging, trees)
