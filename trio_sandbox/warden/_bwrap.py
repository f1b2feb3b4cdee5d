"""The bubblewrap back end (the default): namespaces, read-only root, seccomp, uid 65534.

Settings (DESIGN.md §3) and the three traps of a root launcher, all fixed here:
- /proc/sys is writable by root unless bound read-only: `--ro-bind /proc/sys /proc/sys`.
- root-only files (/etc/shadow, ...) are readable by a root sandbox: when the warden is root
  the sandbox gets no user namespace and the command runs as uid/gid 65534 (bwrap keeps only
  CAP_SETUID/SETGID/SETPCAP, then `setpriv` drops to 65534 with no capabilities, an empty
  bounding set and no_new_privs); files of /etc that others may not read are masked as well.
- bwrap's init (PID 1 inside) keeps the environment bwrap was started with, readable in
  /proc/1/environ: bwrap itself is started with a scrubbed environment.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs

from ._launch import Launched, become_subreaper, launch
from ._ports import bind_published_port
from ._seccomp import deny_list_fd
from ._spec import WrapSpec, WrapUsageError
from ._volumes import Mount, resolve_mounts

SANDBOX_UID = 65534  # nobody / nogroup
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What bwrap itself runs with: nothing of the launcher's environment.
BWRAP_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
_MERGED_USR_NAMES = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def _is_within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def python_bind_paths() -> tuple[list[str], list[tuple[str, str]]]:
    """What the host image needs besides /usr for this package's own tool server:
    (real directories to bind read-only, (link target, link path) symlinks to recreate)."""
    package_dir = str(Path(__file__).resolve().parents[1])
    real_paths: list[str] = []
    links: list[tuple[str, str]] = []
    for wanted in (sys.prefix, sys.base_prefix, package_dir):
        real = os.path.realpath(wanted)
        if _is_within(real, "/usr"):
            continue
        real_paths.append(real)
        if wanted != real and os.path.islink(wanted):
            links.append((os.readlink(wanted), wanted))
    real_paths.sort(key=len)
    binds: list[str] = []
    for path in real_paths:
        if not any(_is_within(path, bound) for bound in binds):
            binds.append(path)
    return binds, links


def _unreadable_by_others(root: str, relative: str = "etc") -> Iterator[str]:
    """Paths under root/relative that "others" may not read (files) or enter (directories)."""
    with contextlib.suppress(OSError), os.scandir(os.path.join(root, relative)) as entries:
        for entry in entries:
            mode = entry.stat(follow_symlinks=False).st_mode
            inner = f"{relative}/{entry.name}"
            if stat.S_ISDIR(mode):
                if mode & 0o005 != 0o005:
                    yield "/" + inner
                else:
                    yield from _unreadable_by_others(root, inner)
            elif stat.S_ISREG(mode) and not mode & 0o004:
                yield "/" + inner


def _missing_parents(paths: list[str]) -> list[str]:
    """Ancestors of `paths` that the `host` image's tmpfs root does not already provide."""
    # Bound from the host, so everything below them exists already; /tmp is a fresh tmpfs, so
    # only /tmp itself does (a checkout under /tmp needs its parents made).
    provided = ("/usr", "/etc", "/proc", "/dev")
    parents: set[str] = set()
    for path in paths:
        parent = os.path.dirname(path.rstrip("/"))
        while parent not in ("/", "/tmp") and not any(
            _is_within(parent, done) for done in provided
        ):
            parents.add(parent)
            parent = os.path.dirname(parent)
    return sorted(parents, key=lambda parent: (parent.count("/"), parent))


def _find_setpriv(root: str) -> str | None:
    for candidate in ("/usr/bin/setpriv", "/bin/setpriv"):
        if os.path.exists(os.path.join(root, candidate.lstrip("/"))):
            return candidate
    return None


def bwrap_argv(
    spec: WrapSpec, mounts: list[Mount], *, as_root: bool, info_fd: int, seccomp_fd: int
) -> list[str]:
    host_image = spec.image == "host"
    root = "/" if host_image else os.path.abspath(spec.image)
    argv = ["bwrap", "--die-with-parent", "--new-session"]
    argv += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
    if spec.network == "none":
        argv.append("--unshare-net")
    if as_root:
        # No user namespace: uid 65534 inside must be uid 65534 outside (inside a user
        # namespace bwrap maps the sandbox uid to the launcher's, root).
        argv += ["--cap-drop", "ALL"]
        for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"):
            argv += ["--cap-add", cap]
    else:
        argv += ["--unshare-user", "--cap-drop", "ALL"]
    argv += ["--hostname", "sandbox", "--clearenv"]
    for name, value in (("PATH", SANDBOX_PATH), ("HOME", "/tmp"), *spec.env):
        argv += ["--setenv", name, value]

    if host_image:
        argv += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
        for name in _MERGED_USR_NAMES:
            path = "/" + name
            if os.path.islink(path):
                argv += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                argv += ["--ro-bind", path, path]
    else:
        argv += ["--ro-bind", root, "/"]
    for masked in _unreadable_by_others(root):
        if os.path.isdir(os.path.join(root, masked.lstrip("/"))):
            argv += ["--perms", "0000", "--tmpfs", masked]
        else:
            argv += ["--ro-bind", "/dev/null", masked]
    argv += ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys", "--dev", "/dev"]
    argv += ["--perms", "1777", "--tmpfs", "/tmp"]
    if host_image:
        binds, links = python_bind_paths()
        # bwrap creates missing parents of a mount point with mode 0700, which uid 65534
        # could not cross: create them world-traversable first.
        wanted = [*binds, *(link for _, link in links), *(mount.target for mount in mounts)]
        for parent in _missing_parents(wanted):
            argv += ["--perms", "0755", "--dir", parent]
        for path in binds:
            argv += ["--ro-bind", path, path]
        for target, link in links:
            argv += ["--symlink", target, link]
    for mount in mounts:
        if not host_image and not os.path.exists(os.path.join(root, mount.target.lstrip("/"))):
            raise WrapUsageError(f"volume target {mount.target} does not exist in {root}")
        argv += ["--ro-bind" if mount.read_only else "--bind", mount.host_path, mount.target]
    if host_image:
        argv += ["--remount-ro", "/"]
    argv += ["--chdir", spec.workdir or "/"]
    argv += ["--info-fd", str(info_fd), "--seccomp", str(seccomp_fd), "--"]
    if as_root:
        setpriv = _find_setpriv(root)
        if setpriv is None:
            raise WrapUsageError(
                f"{root} has no setpriv: refusing to run the sandbox as root (run the warden as"
                " a normal user, or use an image with util-linux)"
            )
        uid = str(SANDBOX_UID)
        argv += [setpriv, "--reuid", uid, "--regid", uid, "--clear-groups"]
        argv += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    argv += spec.command
    return argv


@attrs.define(eq=False)
class LaunchedBwrap:
    """A started bwrap, with the read end of its --info-fd and the published ports' sockets."""

    bwrap: Launched
    info_read_fd: int
    port_sockets: list[socket.socket]

    def close(self) -> None:
        if self.info_read_fd >= 0:
            os.close(self.info_read_fd)
            self.info_read_fd = -1
        for sock in self.port_sockets:
            sock.close()


def launch_bwrap(spec: WrapSpec) -> LaunchedBwrap:
    """Everything up to a running bwrap, with the standard library only (no Trio yet)."""
    as_root = os.geteuid() == 0
    if not as_root and spec.ports and spec.network == "none":
        raise WrapUsageError(
            "publishing a port into a sandbox with no network needs a root warden (setns);"
            " use --network host or run as root"
        )
    mounts = resolve_mounts(spec.volumes, owner_uid=SANDBOX_UID if as_root else None)
    sockets: list[socket.socket] = []
    info_read_fd, info_write_fd = os.pipe2(os.O_CLOEXEC)
    seccomp_fd = -1
    try:
        sockets += [bind_published_port(port) for port in spec.ports]
        seccomp_fd = deny_list_fd()
        argv = bwrap_argv(
            spec, mounts, as_root=as_root, info_fd=info_write_fd, seccomp_fd=seccomp_fd
        )
        become_subreaper()
        bwrap = launch(argv, env=BWRAP_ENV, pass_fds=(info_write_fd, seccomp_fd))
    except BaseException:
        os.close(info_read_fd)
        for sock in sockets:
            sock.close()
        raise
    finally:
        os.close(info_write_fd)
        if seccomp_fd >= 0:
            os.close(seccomp_fd)
    return LaunchedBwrap(bwrap, info_read_fd, sockets)
