"""Supervising a launched bubblewrap from Trio: its info, the port relays, stopping it."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
from pathlib import Path

import attrs
import trio

from ...concurrency import descendants
from .._children import Child, reap_orphan, supervise
from .._egress import SandboxEgress
from .._errors import NamespaceError
from .._pidfd import close_pidfd, has_exited
from .._publish import Connector, SandboxSockets, connect_on_host, serve_relays
from .._spec import WrapSpec
from .._stopping import ORDINARY_GRACE, StopGrace
from ._start import LaunchedBwrap

_RESIGNAL_INTERVAL_SECONDS = 0.05


@attrs.define(eq=False)
class _Sandbox:
    """What bwrap reports once its namespaces exist (via --info-fd)."""

    grace: StopGrace
    # Makes sockets in the sandbox's network namespace (None: nothing to publish into it).
    sockets: SandboxSockets | None = None
    ready: trio.Event = attrs.Factory(trio.Event)
    info_done: trio.Event = attrs.Factory(trio.Event)
    init_pid: int = 0
    init_pidfd: int = -1

    async def reap_init(self) -> None:
        """bwrap's init dies just after bwrap (parent-death signal); reap it as its subreaper."""
        if self.init_pidfd >= 0:
            with trio.CancelScope(shield=True):
                await reap_orphan(self.init_pidfd, within_seconds=ORDINARY_GRACE)

    def close(self) -> None:
        if self.init_pidfd >= 0:
            close_pidfd(self.init_pidfd)
            self.init_pidfd = -1

    async def read_info(self, info_read_fd: int) -> None:
        """Shielded: bwrap either reports or exits (EOF), and `stop` needs the answer even
        when a signal came before this task got to run."""
        try:
            with trio.CancelScope(shield=True):
                data = b""
                async with trio.lowlevel.FdStream(info_read_fd) as stream:
                    while chunk := await stream.receive_some():
                        data += chunk
                        with contextlib.suppress(ValueError):
                            info = json.loads(data)
                            break
                    else:
                        return  # bwrap failed before creating the sandbox; it says why
                self.init_pid = int(info["child-pid"])
                try:
                    # A short command may be over already: its init is then a zombie of ours
                    # (kept for reaping) without namespaces, and the sandbox never "ready".
                    self.init_pidfd = os.pidfd_open(self.init_pid)
                except (ProcessLookupError, FileNotFoundError):
                    return
                if self.sockets is not None:
                    try:
                        await self.sockets.enter(self.init_pidfd)
                    except NamespaceError:
                        if has_exited(self.init_pidfd):
                            return  # the command was over before its namespaces were entered
                        raise
                self.ready.set()
        finally:
            self.info_done.set()

    async def connect(self, port: int) -> trio.SocketStream:
        await self.ready.wait()
        assert self.sockets is not None
        return await self.sockets.connect(port)

    async def stop(self, bwrap: Child) -> None:
        """bwrap forwards no signals: interrupt the command, then end the pid namespace."""
        with trio.move_on_after(self.grace.seconds):
            await self.info_done.wait()
        if self.ready.is_set():
            # Like Ctrl-C on a terminal's foreground group: every process in the sandbox but
            # its init (the command shares init's process group, so killpg cannot single it
            # out). Processes started during the grace period get it too: a shell that was
            # between two commands when the first round came would start the next one.
            signalled: set[int] = set()
            with trio.move_on_after(self.grace.seconds):
                while True:
                    for pid in set(descendants([self.init_pid])) - signalled:
                        signalled.add(pid)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGINT)
                    with trio.move_on_after(_RESIGNAL_INTERVAL_SECONDS):
                        await bwrap.wait()
                        return
            # Killing the namespace's init kills every process in it.
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.init_pidfd, signal.SIGKILL)
            with trio.move_on_after(self.grace.seconds):
                await bwrap.wait()
                return
        # --die-with-parent: every sandbox process follows bwrap.
        bwrap.send_signal(signal.SIGKILL)


async def _release_when_listening(egress: SandboxEgress, launched: LaunchedBwrap) -> None:
    await egress.listening.wait()
    launched.release_command()


async def supervise_bwrap(launched: LaunchedBwrap, spec: WrapSpec, grace: StopGrace) -> int:
    """Relay the published ports until bwrap exits; return its (the command's) status."""
    helper = launched.netns_helper
    sandbox = _Sandbox(grace, SandboxSockets(helper) if helper is not None else None)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sandbox.read_info, launched.info_read_fd)
            launched.info_read_fd = -1  # owned by read_info now
            host_network = spec.network == "host"
            connect: Connector = connect_on_host if host_network else sandbox.connect
            policy = spec.egress
            if policy is not None and sandbox.sockets is not None:
                egress = SandboxEgress(policy, spec.report, injected=launched.injection)
                nursery.start_soon(egress.serve, sandbox.sockets, sandbox.ready.wait)
                nursery.start_soon(_release_when_listening, egress, launched)
                connect = egress.after_listening(connect)
            # No checkpoint before `supervise`: a stop signal may already be pending, and
            # only `supervise` knows how to stop the sandbox gracefully.
            nursery.start_soon(
                functools.partial(
                    serve_relays,
                    spec.ports,
                    launched.port_sockets,
                    connect,
                    host_network=host_network,
                )
            )
            status = await supervise(launched.bwrap, stop=sandbox.stop)
            nursery.cancel_scope.cancel()
        if status != 0 and sandbox.init_pid == 0 and os.geteuid() != 0:
            # bwrap failed before it made the sandbox; as an ordinary user that is most often
            # the kernel refusing user namespaces: say what to change.
            advice = user_namespace_advice()
            print(f"trio-sandbox-warden: note: {advice}", file=sys.stderr, flush=True)
        return status
    finally:
        launched.close()
        await sandbox.reap_init()
        sandbox.close()
        launched.remove_cgroups()


def user_namespace_advice() -> str:
    """What to do when bubblewrap cannot create a user namespace for an ordinary user."""
    checks = [
        (
            "/proc/sys/kernel/unprivileged_userns_clone",
            "0",
            "sysctl kernel.unprivileged_userns_clone=1",
        ),
        ("/proc/sys/user/max_user_namespaces", "0", "sysctl user.max_user_namespaces=15000"),
        (
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1",
            "allow bwrap in AppArmor (Ubuntu 24.04: install the 'apparmor-profiles' bwrap-userns-"
            "restrict profile, or add a profile for /usr/bin/bwrap with 'userns,'), or sysctl"
            " kernel.apparmor_restrict_unprivileged_userns=0",
        ),
    ]
    for path, blocking, fix in checks:
        with contextlib.suppress(OSError):
            if Path(path).read_text().strip() == blocking:
                return f"{path} is {blocking}: unprivileged user namespaces are off; {fix}"
    return "unprivileged user namespaces seem unavailable (is this a nested container?)"
