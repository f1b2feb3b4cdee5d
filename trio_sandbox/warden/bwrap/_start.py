"""Starting bubblewrap before Trio is imported (standard library only): the sandbox boots while
the warden's own imports run. Volumes are opened, ports bound, the namespace helper started and
bwrap started from the main thread (see :mod:`.._child_start`)."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from ...concurrency import memfd_holding
from .._child_start import LaunchedChild, become_subreaper, launch
from .._errors import IdmapUnavailableError, WrapRequestError
from .._inject import InjectionMaterial, injected_environment, read_injection
from .._limits import LimitPlan, announce_limits, plan_limits, preexec, sweep_stale_cgroups
from .._netns import NetnsHelper, start_netns_helper
from .._ports import bind_published_port
from .._runtime import RuntimeLayout, runtime_layout
from .._seccomp import deny_list_fd
from .._spec import WrapSpec
from .._trust import plan_trust
from .._volumes import Mount, open_source, resolve_mounts, writable_trees
from ._command import (
    BWRAP_ENV,
    bwrap_argv,
    bwrap_setenv,
    find_tool,
    read_only_trees,
    sandbox_identity,
)
from ._idmap import IdmappedTrees, idmap_trees

_BWRAP_MISSING = (
    "bubblewrap (bwrap) is not installed: install the 'bubblewrap' package (Debian/Ubuntu:"
    " apt-get install bubblewrap; Fedora: dnf install bubblewrap), or choose --backend podman"
)


def _idmapped_view(
    spec: WrapSpec, runtime: RuntimeLayout | None, mounts: Sequence[Mount], owner: tuple[int, int]
) -> IdmappedTrees | None:
    """The read-only trees id-mapped so that the sandbox's uid and gid own nothing in them
    (root warden); None, with a warning, where the kernel or a file system cannot."""
    try:
        return idmap_trees(
            read_only_trees(spec, runtime),
            uid=owner[0],
            gid=owner[1],
            also_bound=[mount.host_path for mount in mounts],
        )
    except IdmapUnavailableError as exc:
        print(
            f"trio-sandbox-warden: warning: the host's files are bound without an id map ({exc}):"
            f" the sandbox, as uid {owner[0]}, can read files outside /etc that only uid"
            f" {owner[0]} may read",
            file=sys.stderr,
            flush=True,
        )
        return None


@dataclass(eq=False, slots=True)
class LaunchedBwrap:
    """A started bwrap, with the read end of its --info-fd, the published ports' sockets and
    the helper that makes sockets inside the sandbox's network namespace."""

    bwrap: LaunchedChild
    info_read_fd: int
    port_sockets: list[socket.socket]
    netns_helper: NetnsHelper | None
    limits: LimitPlan | None = None
    # The write end of bwrap's --block-fd (-1: the command was not held back).
    block_write_fd: int = -1
    # inject_secrets' values and CA, for the egress proxy (None: nothing injected).
    injection: InjectionMaterial | None = field(default=None, repr=False)

    def release_command(self) -> None:
        """Let the held-back command start (the sandbox's egress proxy listens now)."""
        if self.block_write_fd >= 0:
            os.write(self.block_write_fd, b"go")
            os.close(self.block_write_fd)
            self.block_write_fd = -1

    def close(self) -> None:
        if self.info_read_fd >= 0:
            os.close(self.info_read_fd)
            self.info_read_fd = -1
        if self.block_write_fd >= 0:
            os.close(self.block_write_fd)
            self.block_write_fd = -1
        for sock in self.port_sockets:
            sock.close()

    def remove_cgroups(self) -> None:
        if self.limits is not None:
            self.limits.remove()


def launch_bwrap(spec: WrapSpec) -> LaunchedBwrap:
    """Everything up to a running bwrap, with the standard library only (no Trio yet)."""
    if shutil.which("bwrap") is None:
        raise WrapRequestError(_BWRAP_MISSING)
    as_root = os.geteuid() == 0
    host_image = spec.image == "host"
    root = "/" if host_image else os.path.abspath(spec.image)
    sweep_stale_cgroups()
    limits = plan_limits(spec.limits, as_root=as_root, prlimit=find_tool(root, "prlimit"))
    announce_limits(limits, spec.report)
    helper = start_netns_helper() if spec.reaches_into_netns else None
    sockets: list[socket.socket] = []
    data_fds: list[int] = []
    try:
        injection = read_injection(spec)
    except BaseException:
        if helper is not None:
            helper.close()
        limits.remove()
        raise
    info_read_fd, info_write_fd = os.pipe2(os.O_CLOEXEC)
    # With the egress proxy, the command waits until the proxy listens inside.
    block_read_fd, block_write_fd = os.pipe2(os.O_CLOEXEC) if spec.network == "allow" else (-1, -1)
    seccomp_fd = env_fd = -1
    idmapped: IdmappedTrees | None = None
    volume_fds: dict[str, int] = {}
    try:
        # Every volume is opened first, refusing links the sandbox could have planted, and
        # bound (and its owner read) from that descriptor.
        writable = writable_trees(spec.volumes)
        for volume in spec.volumes:
            if not volume.named and os.path.exists(volume.source):
                volume_fds[volume.source] = open_source(volume.source, writable)
        # Named volumes belong to the sandbox user, who must be able to write them.
        owner = sandbox_identity(spec, as_root=as_root, sources=volume_fds)
        mounts = resolve_mounts(spec.volumes, owner=owner if as_root else None)
        for mount in mounts:
            if mount.named:
                volume_fds[mount.host_path] = open_source(mount.host_path, writable)
        sockets += [bind_published_port(port) for port in spec.ports]
        seccomp_fd = deny_list_fd()
        data_binds: list[tuple[int, str]] = []
        if injection is not None:
            trust = plan_trust(root, injection.ca_certificate_pem)
            spec = replace(spec, env=injected_environment(spec, injection, trust))
            for target in trust.targets:
                data_fds.append(memfd_holding("trio-sandbox-trust", trust.data))
                data_binds.append((data_fds[-1], target))
        runtime = runtime_layout() if host_image else None
        setenv = bwrap_setenv(spec, runtime, limits)
        env_fd = memfd_holding("trio-sandbox-env", b"".join(o.encode() + b"\0" for o in setenv))
        if as_root:
            idmapped = _idmapped_view(spec, runtime, mounts, owner)
        argv = bwrap_argv(
            spec,
            mounts,
            as_root=as_root,
            info_fd=info_write_fd,
            seccomp_fd=seccomp_fd,
            runtime=runtime,
            limits=limits,
            block_fd=block_read_fd if block_read_fd >= 0 else None,
            sources=idmapped.sources if idmapped is not None else None,
            volume_fds=volume_fds,
            env_fd=env_fd,
            data_binds=data_binds,
        )
        become_subreaper()
        env = dict(BWRAP_ENV)
        if limits.outer_prefix:
            argv = [*limits.outer_prefix, *argv]
            # What systemd-run needs to reach the (user) service manager.
            for name in ("XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"):
                if name in os.environ:
                    env[name] = os.environ[name]
        passed = (info_write_fd, seccomp_fd, env_fd, *volume_fds.values(), *data_fds)
        passed += (block_read_fd,) if block_read_fd >= 0 else ()
        steps = [idmapped.attach if idmapped is not None else None, preexec(limits)]
        bwrap = launch(argv, env=env, pass_fds=passed, preexec=_in_order(steps))
    except BaseException:
        os.close(info_read_fd)
        if block_write_fd >= 0:
            os.close(block_write_fd)
        for sock in sockets:
            sock.close()
        if helper is not None:
            helper.close()
        limits.remove()
        raise
    finally:
        os.close(info_write_fd)
        if block_read_fd >= 0:
            os.close(block_read_fd)
        for fd in (seccomp_fd, env_fd, *data_fds):
            if fd >= 0:
                os.close(fd)
        if idmapped is not None:
            idmapped.close()  # bubblewrap's process has attached them
        for fd in volume_fds.values():
            os.close(fd)  # bubblewrap has them (and closes them before the command runs)
    return LaunchedBwrap(
        bwrap, info_read_fd, sockets, helper, limits, block_write_fd, injection=injection
    )


def _in_order(steps: Sequence[Callable[[], None] | None]) -> Callable[[], None] | None:
    """One pre-exec function running the given ones (None: nothing to run)."""
    present = [step for step in steps if step is not None]
    if not present:
        return None

    def run_all() -> None:
        for step in present:
            step()

    return run_all
