"""A container engine running the sandbox: `podman|docker run --rm -i --init`, mapped from the
warden's command line.

Fixes from DESIGN.md §3 for this machine kind: podman's runtime is runc (crun refuses hybrid
cgroups) and ulimits are explicit (nofile 20000, nproc 32768) because the engines' defaults
exceed this machine's hard limits. `--init` puts a real PID 1 in front of the command, which
otherwise ignores SIGTERM/SIGINT. With `--network none` a published port is relayed into the
container's network namespace exactly as for bubblewrap (the engines cannot publish ports of
a container without network).

podman gets the sandbox's seccomp rules (:mod:`.._seccomp`) merged into its own default profile,
a /dev/shm bounded like bubblewrap's, no writable /run or /var/tmp, nosuid,nodev volumes, and
/proc's root-only files masked.

With inject_secrets, the trust bundle (the image's own system bundle, read through ``podman image
mount`` as root, else this host's, plus the interception CA) is a 0644 file of the engine's
working directory, bound read-only over every system bundle path of the image (:mod:`.._trust`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence

import attrs
import trio

from ...contract import LIMITS_VARIABLE, ResourceLimits
from .._children import Child, run_child
from .._egress import SandboxEgress
from .._errors import WrapRequestError
from .._inject import InjectionMaterial, injected_environment, warn
from .._limits import Enforcement, LimitPlan, announce_limits, limits_for_tools
from .._memfs import shm_size
from .._netns import NetnsHelper
from .._ports import bind_published_port
from .._procfs import root_only_proc_files
from .._publish import Connector, SandboxSockets, connect_on_host, serve_relays
from .._seccomp import container_profile
from .._spec import WrapSpec
from .._stopping import StopGrace
from .._trust import TrustPlan, plan_trust
from .._volumes import open_source, resolve_mounts, writable_trees

ULIMITS = ("nofile=20000:20000", "nproc=32768:32768")
_DOCKER_SECCOMP_WARNING = (
    "trio-sandbox-warden: warning: docker runs with its own default seccomp profile: set-id"
    " modes and socket families such as AF_VSOCK are not refused (use podman or bubblewrap)"
)
# podman's default seccomp profile (an allow-list), which the warden's rules are merged into.
ENGINE_SECCOMP_PROFILES = ("/etc/containers/seccomp.json", "/usr/share/containers/seccomp.json")
# How often to ask the engine whether the container runs yet (for the egress proxy, which must
# listen before the first tool call; `podman inspect` takes tens of milliseconds itself).
_RUNNING_POLL_SECONDS = 0.05


def write_seccomp_profile(directory: str) -> str:
    """podman's default profile with the sandbox's seccomp rules merged in, as a file in
    ``directory``; refuses when podman's own profile cannot be found (rather than run a
    container without the rules, or without podman's)."""
    for path in ENGINE_SECCOMP_PROFILES:
        try:
            with open(path, encoding="utf-8") as default:
                profile = container_profile(json.load(default))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise WrapRequestError(f"cannot read podman's seccomp profile {path}: {exc}") from None
        written = os.path.join(directory, "seccomp.json")
        with open(written, "w", encoding="utf-8") as out:
            json.dump(profile, out)
        return written
    raise WrapRequestError(
        "podman's default seccomp profile was not found (looked for"
        f" {' and '.join(ENGINE_SECCOMP_PROFILES)}); install containers-common"
    )


# The sandbox's values reach the engine through its environment (``--env NAME``), where other
# local users cannot read them as they can a command line; except the variables the engine
# itself reads (its own PATH, proxies, runtime directories), which stay ``--env K=V``.
_ENGINE_VARIABLES = frozenset({"PATH", "HOME", "TMPDIR", "TZ", "NO_PROXY", "SSL_CERT_FILE"})
_ENGINE_PREFIXES = ("LD_", "XDG_", "CONTAINERS_", "DOCKER_", "PODMAN_", "BUILDAH_", "GO")


def _engine_reads(name: str) -> bool:
    upper = name.upper()
    return (
        upper in _ENGINE_VARIABLES or upper.endswith("_PROXY") or upper.startswith(_ENGINE_PREFIXES)
    )


def engine_environment(spec: WrapSpec) -> dict[str, str]:
    """The engine's environment: this process's, with the values ``--env NAME`` takes."""
    return {**os.environ, **{key: value for key, value in spec.env if not _engine_reads(key)}}


def container_argv(
    engine: str,
    spec: WrapSpec,
    name: str,
    verb: str = "run",
    seccomp_profile: str | None = None,
    data_binds: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """``ENGINE run ...`` (or ``create`` with the same options, to start it later);
    ``seccomp_profile``: the profile file for ``--security-opt seccomp=`` (podman);
    ``data_binds``: (host file, path inside) bound read-only (the trust bundle)."""
    # --pull never: images are local; the warden never reaches a registry on its own.
    argv = [engine, verb, "--rm", "-i", "--init", "--pull", "never", "--name", name]
    if engine == "podman":
        argv += ["--runtime", "runc"]
    for ulimit in ULIMITS:
        argv += ["--ulimit", ulimit]
    # allow: no network either; the warden's egress proxy listens in the container's loopback.
    network = "host" if spec.network == "host" else "none"
    argv += ["--network", network, "--cap-drop", "ALL"]
    argv += ["--security-opt", "no-new-privileges", "--read-only"]
    if seccomp_profile is not None:
        argv += ["--security-opt", f"seccomp={seccomp_profile}"]
    if engine == "podman":
        # The container's root is the host's: hide /proc's root-only files from it too.
        argv += ["--security-opt", f"mask={':'.join(root_only_proc_files())}"]
    # No writable /run or /var/tmp (podman's --read-only would add unbounded ones); /dev is the
    # engine's own 64 MiB tmpfs, /dev/shm is bounded like bubblewrap's.
    if engine == "podman":
        argv.append("--read-only-tmpfs=false")
    argv += ["--shm-size", str(shm_size(spec.limits))]
    limits = spec.limits
    if limits.memory is not None:
        argv += ["--memory", str(limits.memory), "--memory-swap", str(limits.memory)]
    if limits.pids is not None:
        argv += ["--pids-limit", str(limits.pids)]
    if limits.cpus is not None:
        argv += ["--cpus", f"{limits.cpus:g}"]
    tmp = "rw,mode=1777" + (f",size={limits.tmp_size}" if limits.tmp_size is not None else "")
    argv += ["--tmpfs", f"/tmp:{tmp}"]
    plan = engine_limit_plan(engine, limits)
    argv += ["--env", f"{LIMITS_VARIABLE}={limits_for_tools(plan, None)}"]
    writable = writable_trees(spec.volumes)
    for mount in resolve_mounts(spec.volumes):
        # The engine takes a path: the real one, found without following a link the sandbox
        # could have planted in a writable volume.
        opened = open_source(mount.host_path, writable)
        try:
            host_path = os.readlink(f"/proc/self/fd/{opened}")
        finally:
            os.close(opened)
        options = ["ro"] if mount.read_only else []
        if engine == "podman":
            # No device or set-id file in a volume works inside (bubblewrap's binds are alike;
            # docker's --volume has no such options).
            options += ["nosuid", "nodev"]
        suffix = f":{','.join(options)}" if options else ""
        argv += ["--volume", f"{host_path}:{mount.target}{suffix}"]
    for host_path, target in data_binds:
        argv += ["--volume", f"{host_path}:{target}:ro"]
    for key, value in spec.env:
        argv += ["--env", f"{key}={value}" if _engine_reads(key) else key]
    if spec.workdir:
        argv += ["--workdir", spec.workdir]
    argv += ["--", spec.image, *spec.command]
    return argv


@attrs.define(eq=False)
class _Container:
    engine: str
    name: str
    grace: StopGrace
    sockets: SandboxSockets | None = None
    _entering: trio.Lock = attrs.field(factory=trio.Lock)

    async def _pid(self) -> int:
        result = await trio.run_process(
            [self.engine, "inspect", "--format", "{{.State.Pid}}", self.name],
            capture_stdout=True,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        text = result.stdout.decode().strip()
        return int(text) if result.returncode == 0 and text.isdigit() else 0

    async def _enter(self) -> bool:
        """Have the namespace helper enter the container, if it runs; whether it did."""
        assert self.sockets is not None
        async with self._entering:
            if not self.sockets.entered.is_set():
                pid = await self._pid()
                if pid <= 0:
                    return False
                pidfd = os.pidfd_open(pid)
                try:
                    await self.sockets.enter(pidfd)
                finally:
                    os.close(pidfd)
        return True

    async def running(self) -> None:
        """Return once the helper has entered the running container (polling the engine)."""
        while True:
            if await self._enter():
                return
            await trio.sleep(_RUNNING_POLL_SECONDS)

    async def connect(self, port: int) -> trio.SocketStream:
        if not await self._enter():
            raise ConnectionRefusedError("the container is not running yet")
        assert self.sockets is not None
        return await self.sockets.connect(port)

    async def initialize(
        self, create_argv: list[str], cwd: str, env: Mapping[str, str]
    ) -> int | None:
        """Create the container and make its namespaces, its command not started; the
        engine's status if that failed (its message is on stderr)."""
        for argv in (create_argv, [self.engine, "init", self.name]):
            done = await trio.run_process(
                argv, stdout=subprocess.DEVNULL, cwd=cwd, env=env, check=False
            )
            if done.returncode != 0:
                return done.returncode
        return None

    async def remove(self) -> None:
        await trio.run_process(
            [self.engine, "rm", "--force", self.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )

    async def stop(self, client: Child) -> None:
        # The engine client proxies SIGINT to the container, whose init passes it on.
        client.send_signal(signal.SIGINT)
        with trio.move_on_after(self.grace.seconds):
            await client.wait()
            return
        await self.remove()
        with trio.move_on_after(self.grace.seconds):
            await client.wait()
            return
        client.send_signal(signal.SIGKILL)


async def _run_guard(
    container: _Container,
    pipe_read_fd: int,
    engine_cwd: str,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A watchdog in its own session that removes the container (and the engine's working
    directory) once the warden is gone: its stdin reaches EOF when the warden exits, even by
    SIGKILL (the engine's conmon would otherwise keep the container running)."""
    script = (
        'read _ignored; for attempt in 1 2 3 4 5; do "$0" rm --force "$1"; '
        '"$0" container inspect "$1" || break; sleep 1; done; rm -rf -- "$2"'
    )
    await run_child(
        ["sh", "-c", script, container.engine, container.name, engine_cwd],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        stdin=pipe_read_fd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        on_started=task_status.started,
    )


def engine_limit_plan(engine: str, limits: ResourceLimits) -> LimitPlan:
    """The engine enforces every limit itself (its own cgroup for the container)."""
    by = f"{engine} (container cgroup)"
    return LimitPlan(
        limits,
        Enforcement(
            by if limits.memory is not None else None,
            by if limits.pids is not None else None,
            by if limits.cpus is not None else None,
            "tmpfs size" if limits.tmp_size is not None else None,
        ),
    )


async def image_trust(engine: str, spec: WrapSpec, ca_pem: str) -> TrustPlan:
    """The image's system bundle plus the CA, read through ``podman image mount`` (root only);
    otherwise, or when the image has none, the host's, with a warning saying so."""
    reason = "only a root podman can read the image's files before it runs"
    if engine == "podman" and os.geteuid() == 0:
        mounted = await trio.run_process(
            [engine, "image", "mount", spec.image],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        if mounted.returncode == 0:
            try:
                return await trio.to_thread.run_sync(
                    plan_trust, mounted.stdout.decode().strip(), ca_pem
                )
            except WrapRequestError:
                reason = "it has no system trust bundle"
            finally:
                with trio.CancelScope(shield=True):
                    await trio.run_process(
                        [engine, "image", "unmount", spec.image],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        check=False,
                    )
        else:
            lines = mounted.stderr.decode(errors="replace").strip().splitlines()
            reason = f"podman image mount failed: {lines[-1] if lines else mounted.returncode}"
    elif engine != "podman":
        reason = f"{engine} cannot show an image's files before it runs"
    warn(
        spec,
        f"inject_secrets: the sandbox gets this host's system trust bundle plus the interception"
        f" CA, not {spec.image}'s own ({reason})",
    )
    return await trio.to_thread.run_sync(plan_trust, "/", ca_pem)


def write_trust_bundle(directory: str, trust: TrustPlan) -> str:
    """The trust bundle as a file of the engine's working directory (0644: any uid inside
    reads it; the directory itself is the warden's, 0700)."""
    path = os.path.join(directory, "trust-bundle.pem")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with open(fd, "wb") as bundle:
        bundle.write(trust.data)
    os.chmod(path, 0o644)  # whatever the umask
    return path


async def run_container(
    engine: str,
    spec: WrapSpec,
    grace: StopGrace,
    helper: NetnsHelper | None = None,
    injection: InjectionMaterial | None = None,
) -> int:
    """``helper`` (started before Trio) makes the sockets that reach into the container;
    ``injection``: inject_secrets' values and CA, read from the descriptor once it started."""
    announce_limits(engine_limit_plan(engine, spec.limits), spec.report)
    into_container = SandboxSockets(helper) if helper is not None else None
    container = _Container(engine, f"trio-sandbox-{secrets.token_hex(6)}", grace, into_container)
    policy = spec.egress
    # podman can make a container's namespaces without starting its command (`init`): the
    # egress proxy then listens before the command runs, as with bubblewrap's --block-fd.
    # docker cannot; there, tool calls still wait for the proxy (after_listening).
    held = policy is not None and engine == "podman"
    # The engine runs in a directory of its own: conmon before 2.1.13 creates a file named
    # `oom` in its working directory when the memory limit kills (containers/conmon#504),
    # which would otherwise land in the user's project. The seccomp profile is kept there too.
    engine_cwd = tempfile.mkdtemp(prefix="trio-sandbox-engine-")
    data_binds: list[tuple[str, str]] = []
    try:
        profile = write_seccomp_profile(engine_cwd) if engine == "podman" else None
        if engine != "podman":
            print(_DOCKER_SECCOMP_WARNING, file=sys.stderr, flush=True)
        if injection is not None:
            trust = await image_trust(engine, spec, injection.ca_certificate_pem)
            spec = dataclasses.replace(spec, env=injected_environment(spec, injection, trust))
            bundle = write_trust_bundle(engine_cwd, trust)
            data_binds = [(bundle, target) for target in trust.targets]
    except BaseException:
        shutil.rmtree(engine_cwd, ignore_errors=True)
        raise
    argv = container_argv(
        engine, spec, container.name, "create" if held else "run", profile, data_binds
    )
    sockets = [bind_published_port(port) for port in spec.ports]
    guard_read_fd, guard_write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        async with trio.open_nursery() as guard_nursery:
            await guard_nursery.start(_run_guard, container, guard_read_fd, engine_cwd)
            os.close(guard_read_fd)
            guard_read_fd = -1
            try:
                async with trio.open_nursery() as nursery:
                    host_network = spec.network == "host"
                    connect: Connector = connect_on_host if host_network else container.connect
                    if policy is not None and into_container is not None:
                        egress = SandboxEgress(policy, spec.report, injected=injection)
                        if held:
                            failed = await container.initialize(
                                argv, engine_cwd, engine_environment(spec)
                            )
                            if failed is not None:
                                return failed
                            argv = [engine, "start", "--attach", "--interactive", container.name]
                        nursery.start_soon(egress.serve, into_container, container.running)
                        if held:
                            await egress.listening.wait()
                        connect = egress.after_listening(connect)
                    nursery.start_soon(
                        functools.partial(
                            serve_relays, spec.ports, sockets, connect, host_network=host_network
                        )
                    )
                    status = await run_child(
                        argv, env=engine_environment(spec), cwd=engine_cwd, stop=container.stop
                    )
                    nursery.cancel_scope.cancel()
            finally:
                os.close(guard_write_fd)  # the guard removes the container, then exits
                guard_write_fd = -1
        return status
    finally:
        for fd in (guard_read_fd, guard_write_fd):
            if fd >= 0:
                os.close(fd)
        for sock in sockets:
            sock.close()
        shutil.rmtree(engine_cwd, ignore_errors=True)
