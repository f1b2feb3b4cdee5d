"""bubblewrap's command line: namespaces, read-only root, seccomp, no capabilities.

Who the command runs as:
- root warden (containers, CI, VMs): no user namespace (inside one, bwrap would map the sandbox
  user to host root, which still reads /etc/shadow). The command runs as the owner of the
  workspace — the first writable bind volume, else the first read-only one — so that its files
  belong to whoever owns the project and it can write whatever that owner can, a 0700
  directory included; as uid/gid 65534 without a volume; or as ``--user``. bwrap keeps only
  CAP_SETUID/SETGID/SETPCAP, then ``setpriv`` drops to that uid with no capabilities, an empty
  bounding set, locked securebits (so even uid 0 gains nothing at exec) and no_new_privs.
- ordinary user: a user namespace that maps the user's own uid, so files created in a volume are
  the user's; ``--user`` changes the uid seen inside only.

The three traps of a root launcher, all fixed here: /proc/sys is bound read-only; the host's
trees are bound id-mapped so that the sandbox's uid owns nothing in them (:mod:`._idmap`: a
uid-0 sandbox reads root's files as others do, under /usr as well as /etc), and files of /etc
that others may not read are masked besides; bwrap itself is started with a scrubbed
environment, so its init (PID 1 inside) carries nothing of the launcher's. Kernel interfaces
that matter to a uid-0 sandbox (/proc/sysrq-trigger, kcore, keys, ...) are masked or read-only
for every sandbox, and so are /proc's root-only files. /dev is read-only but for a bounded
/dev/shm (mode 1777), and the tmpfs that mask directories are read-only: nothing in-memory is
writable beyond /tmp and /dev/shm. Volumes are bound from descriptors opened without following
a symbolic link inside a writable volume (:func:`.._volumes.open_source`).

The runtime of this package's own tool server is bound under /.trio-sandbox (:mod:`.._runtime`).
With inject_secrets, the system trust bundle (plus the interception CA, :mod:`.._trust`) is a
data file bound read-only over the root's own, mode 0444.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from ...contract import LIMITS_VARIABLE, RUNTIME_ROOT
from .._errors import WrapRequestError
from .._limits import (
    LimitPlan,
    limits_for_tools,
)
from .._memfs import SHM_SIZE, shm_size
from .._procfs import root_only_proc_files
from .._runtime import RuntimeLayout, is_within, runtime_layout
from .._spec import WrapSpec
from .._volumes import Mount

# Where the sandbox's memory cgroup is shown to the tool server (read-only).
CGROUP_INSIDE = f"{RUNTIME_ROOT}/cgroup"
NOBODY = (65534, 65534)  # nobody / nogroup: the sandbox user when there is no workspace
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What bwrap itself runs with: nothing of the launcher's environment.
BWRAP_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
_MERGED_USR_NAMES = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# The host's system directories the `host` image binds read-only: no volume may go inside.
_HOST_SYSTEM_DIRS = ("/usr", "/etc")
# Kernel interfaces a sandbox never needs (Docker masks the same): hidden, or read-only.
_MASKED_PROC = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
)
_READ_ONLY_PROC = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
_LOCKED_SECUREBITS = "+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked"


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


def _empty_read_only_dir(path: str, perms: str) -> list[str]:
    """An empty directory over ``path``: a tmpfs that is then made read-only, or the sandbox
    (its owner, as uid 0 or in its user namespace) could chmod it and fill it without bound."""
    return ["--perms", perms, "--size", "4096", "--tmpfs", path, "--remount-ro", path]


def _host_system_trees() -> list[str]:
    """What the ``host`` image binds of the host's root: /usr, /etc, and the top-level library
    directories that are not merged-usr symlinks."""
    trees = ["/usr", "/etc"]
    for name in _MERGED_USR_NAMES:
        path = "/" + name
        if not os.path.islink(path) and os.path.isdir(path):
            trees.append(path)
    return trees


def read_only_trees(spec: WrapSpec, runtime: RuntimeLayout | None) -> list[str]:
    """Every host tree bubblewrap binds read-only besides volumes: the system's, or an image's
    root directory, and the tool server's runtime."""
    trees = _host_system_trees() if spec.image == "host" else [os.path.abspath(spec.image)]
    if runtime is not None:
        trees += [host_path for host_path, _ in runtime.binds]
    return trees


def _missing_parents(paths: list[str], inside_volumes: Sequence[str] = ()) -> list[str]:
    """Ancestors of ``paths`` that the ``host`` image's tmpfs root does not already provide.

    Directories inside a volume are never made (that would write into the user's volume); a
    volume nested in another must find its mount point there already (checked elsewhere).
    """
    # Bound from the host, so everything below them exists already; /tmp is a fresh tmpfs, so
    # only /tmp itself does (a path under /tmp needs its parents made).
    provided = ("/usr", "/etc", "/proc", "/dev", *inside_volumes)
    parents: set[str] = set()
    for path in paths:
        parent = os.path.dirname(path.rstrip("/"))
        while parent not in ("/", "/tmp") and not any(is_within(parent, done) for done in provided):
            parents.add(parent)
            parent = os.path.dirname(parent)
    return sorted(parents, key=lambda parent: (parent.count("/"), parent))


def find_tool(root: str, name: str) -> str | None:
    """The path of a util-linux tool inside the sandbox's root file system, if it has one."""
    for candidate in (f"/usr/bin/{name}", f"/bin/{name}"):
        if os.path.exists(os.path.join(root, candidate.lstrip("/"))):
            return candidate
    return None


def workspace_owner(
    spec: WrapSpec, sources: Mapping[str, int] | None = None
) -> tuple[int, int] | None:
    """uid and gid of the workspace — whose project the agent works on: the first writable
    bind volume, else the first read-only one (``sources``: their opened descriptors)."""
    sources = sources or {}
    binds = [v for v in spec.volumes if not v.named and os.path.exists(v.source)]
    for volume in sorted(binds, key=lambda v: v.read_only):
        opened = sources.get(volume.source)
        info = os.stat(volume.source) if opened is None else os.fstat(opened)
        return info.st_uid, info.st_gid
    return None


def sandbox_identity(
    spec: WrapSpec, *, as_root: bool, sources: Mapping[str, int] | None = None
) -> tuple[int, int]:
    """The uid and gid the command runs as (see the module docstring)."""
    if spec.user is not None:
        return spec.user
    if not as_root:
        return os.getuid(), os.getgid()
    return workspace_owner(spec, sources) or NOBODY


def check_volume_targets(mounts: Sequence[Mount], *, host_image: bool) -> None:
    """Refuse volumes bubblewrap would have to make a mount point for inside the user's files
    (a volume nested in another), or mount through a link there, or inside the host's read-only
    system directories."""
    for mount in mounts:
        if host_image and any(is_within(mount.target, d) for d in _HOST_SYSTEM_DIRS):
            raise WrapRequestError(
                f"volume target {mount.target} is inside the host's read-only /usr or /etc"
            )
        for outer in mounts:
            if outer is mount or not is_within(mount.target, outer.target):
                continue
            point = outer.host_path
            for name in mount.target[len(outer.target) :].strip("/").split("/"):
                point = os.path.join(point, name)
                if os.path.islink(point):
                    # bubblewrap would mount wherever it points (within its own namespace).
                    raise WrapRequestError(
                        f"volume target {mount.target}: {point} is a symbolic link inside"
                        f" volume {outer.target} (the sandbox may have made it); refusing to"
                        " mount there"
                    )
            if not os.path.exists(point):
                raise WrapRequestError(
                    f"volume target {mount.target} lies inside volume {outer.target} where"
                    f" {point} does not exist; create it, or mount the volumes side by side"
                )


def _memory_cgroup(spec: WrapSpec, limits: LimitPlan | None) -> Path | None:
    """The memory cgroup the tool server sees (read-only) to tell an OOM kill, if any."""
    return limits.memory_cgroup if limits is not None and spec.image == "host" else None


def bwrap_setenv(
    spec: WrapSpec, runtime: RuntimeLayout | None, limits: LimitPlan | None
) -> list[str]:
    """The sandbox's variables as bwrap's ``--setenv NAME VALUE`` options."""
    runtime_env = runtime.env if runtime is not None else ()
    limits_env = (
        [
            (
                LIMITS_VARIABLE,
                limits_for_tools(limits, CGROUP_INSIDE if _memory_cgroup(spec, limits) else None),
            )
        ]
        if limits is not None
        else []
    )
    options = []
    for name, value in (
        ("PATH", SANDBOX_PATH),
        ("HOME", "/tmp"),
        *runtime_env,
        *limits_env,
        *spec.env,
    ):
        options += ["--setenv", name, value]
    return options


def bwrap_argv(
    spec: WrapSpec,
    mounts: list[Mount],
    *,
    as_root: bool,
    info_fd: int,
    seccomp_fd: int,
    runtime: RuntimeLayout | None = None,
    limits: LimitPlan | None = None,
    block_fd: int | None = None,
    sources: Mapping[str, str] | None = None,
    volume_fds: Mapping[str, int] | None = None,
    env_fd: int | None = None,
    data_binds: Sequence[tuple[int, str]] = (),
) -> list[str]:
    """``sources``: where to bind a host tree from instead of its own path (its id-mapped
    view, :mod:`._idmap`); ``volume_fds``: volumes' host paths opened (passed to bwrap);
    ``env_fd``: a descriptor holding :func:`bwrap_setenv` (NUL-separated, for ``--args``), so
    that no value is on bwrap's command line, which every local user can read; ``data_binds``:
    (descriptor, path inside) of files made from data (the trust bundle of inject_secrets),
    bound read-only and readable by every uid over what the root file system has there."""
    sources = sources or {}
    volume_fds = volume_fds or {}
    host_image = spec.image == "host"
    root = "/" if host_image else os.path.abspath(spec.image)
    uid, gid = sandbox_identity(spec, as_root=as_root, sources=volume_fds)
    check_volume_targets(mounts, host_image=host_image)
    if host_image and runtime is None:
        runtime = runtime_layout()
    argv = ["bwrap", "--die-with-parent", "--new-session"]
    argv += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
    if spec.network != "host":
        argv.append("--unshare-net")
    if as_root:
        argv += ["--cap-drop", "ALL"]
        for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"):
            argv += ["--cap-add", cap]
    else:
        argv += ["--unshare-user", "--cap-drop", "ALL", "--uid", str(uid), "--gid", str(gid)]
    argv += ["--hostname", "sandbox", "--clearenv"]
    if env_fd is not None:
        argv += ["--args", str(env_fd)]  # after --clearenv: bwrap reads them in place
    else:
        argv += bwrap_setenv(spec, runtime, limits)
    memory_cgroup = _memory_cgroup(spec, limits)

    if host_image:
        for name in _MERGED_USR_NAMES:
            path = "/" + name
            if os.path.islink(path):
                argv += ["--symlink", os.readlink(path), path]
        for path in _host_system_trees():
            argv += ["--ro-bind", sources.get(path, path), path]
    else:
        argv += ["--ro-bind", sources.get(root, root), "/"]
    for masked in _unreadable_by_others(root):
        if os.path.isdir(os.path.join(root, masked.lstrip("/"))):
            argv += _empty_read_only_dir(masked, "0000")
        else:
            argv += ["--ro-bind", "/dev/null", masked]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    # /dev read-only (its devices still work), with a bounded /dev/shm that every uid may use.
    shm = shm_size(limits.limits) if limits is not None else SHM_SIZE
    argv += ["--perms", "1777", "--size", str(shm), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    for path in dict.fromkeys([*_MASKED_PROC, *root_only_proc_files()]):
        if os.path.isdir(path):
            argv += _empty_read_only_dir(path, "0555")
        elif os.path.exists(path):
            argv += ["--ro-bind", "/dev/null", path]
    for path in _READ_ONLY_PROC:
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    argv += ["--perms", "1777"]
    if limits is not None and limits.limits.tmp_size is not None:
        argv += ["--size", str(limits.limits.tmp_size)]
    argv += ["--tmpfs", "/tmp"]
    # After the root's trees and the masks (bwrap mounts in argv order), before the volumes.
    # bwrap makes a data file 0600, which a root warden's sandbox user could not read.
    for fd, target in data_binds:
        argv += ["--perms", "0444", "--ro-bind-data", str(fd), target]
    volume_targets = [mount.target for mount in mounts]
    if host_image:
        assert runtime is not None
        wanted = [*(inside for _, inside in runtime.binds), *volume_targets]
        if memory_cgroup is not None:
            wanted.append(CGROUP_INSIDE)
        # bwrap would make missing parents of a mount point 0700, which the sandbox user could
        # not cross: make them world-traversable first (in the tmpfs root, never in a volume).
        for parent in _missing_parents(wanted, volume_targets):
            argv += ["--perms", "0755", "--dir", parent]
        for host_path, inside in runtime.binds:
            argv += ["--ro-bind", sources.get(host_path, host_path), inside]
        if memory_cgroup is not None:
            # Read-only, for the tool server to tell a command killed by the memory limit.
            argv += ["--ro-bind", str(memory_cgroup), CGROUP_INSIDE]
    for mount in sorted(mounts, key=lambda m: m.target.count("/")):
        if not host_image and not os.path.exists(os.path.join(root, mount.target.lstrip("/"))):
            raise WrapRequestError(f"volume target {mount.target} does not exist in {root}")
        opened = volume_fds.get(mount.host_path)
        if opened is not None:
            argv += ["--ro-bind-fd" if mount.read_only else "--bind-fd", str(opened)]
        else:
            argv += ["--ro-bind" if mount.read_only else "--bind", mount.host_path]
        argv.append(mount.target)
    if host_image:
        argv += ["--remount-ro", "/"]
    argv += ["--chdir", spec.workdir or "/"]
    argv += ["--info-fd", str(info_fd), "--seccomp", str(seccomp_fd)]
    if block_fd is not None:
        # The command waits (after the namespaces exist) until the warden writes here.
        argv += ["--block-fd", str(block_fd)]
    argv.append("--")
    if as_root:
        setpriv = find_tool(root, "setpriv")
        if setpriv is None:
            raise WrapRequestError(
                f"{root} has no setpriv: refusing to run the sandbox as root (run the warden as"
                " a normal user, or use an image with util-linux)"
            )
        argv += [setpriv, "--reuid", str(uid), "--regid", str(gid), "--clear-groups"]
        argv += ["--securebits", _LOCKED_SECUREBITS]
        argv += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    if limits is not None:
        argv += limits.inner_prefix
    argv += runtime.translate(spec.command) if runtime is not None else spec.command
    return argv
