"""The code in the sandbox tries to escape: setuid/setgid files left for the host, socket
families no network namespace isolates (vsock reaches the hypervisor), root-only host files,
unbounded in-memory file systems, and what else a uid-0 or ordinary sandbox can reach.

Every sandbox attack runs in a real bubblewrap sandbox as root and as an ordinary user (the
``sandbox_user`` fixture), and in a real podman container where that back end applies; each
asserts that the attack fails as seen from the host and that the next call still works. The
seccomp rules are also run, instruction by instruction, on generated system calls."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.security.escape_bpf import (
    RET_ALLOW,
    RET_KILL_PROCESS,
    Call,
    errno_of,
    profile_errno,
    run_filter,
)
from tests.security.escape_probes import (
    FILL_MEMORY_FILE_SYSTEMS,
    OTHER_WAYS_OUT,
    READ_FILES,
    SETID_ROUTES,
    SHARED_MEMORY,
    SOCKET_FAMILIES,
)
from tests.support.sandbox_users import SandboxUser
from tests.warden.warden_harness import wrap
from trio_sandbox.warden import WrapRequestError, deny_list_program
from trio_sandbox.warden._errors import IdmapUnavailableError
from trio_sandbox.warden._seccomp import (
    ALLOWED_FAMILIES,
    ALLOWED_NETLINK_PROTOCOLS,
    CREATING_FLAGS,
    DENIED_SYSCALLS_X86_64,
    FAMILIES_BOUND,
    MODE_RULES_X86_64,
    NETLINK_PROTOCOLS_BOUND,
    SETID_BITS,
    SOCKET_SYSCALLS_X86_64,
    UNINSPECTABLE_SYSCALLS_X86_64,
    ModeRule,
    container_profile,
)
from trio_sandbox.warden._volumes import open_source
from trio_sandbox.warden.bwrap._idmap import id_map_without, idmap_trees

PROGRAM = deny_list_program("x86_64")
PODMAN_IMAGE = "localhost/trio-sandbox-test:latest"
ENGINE_DEFAULT_PROFILE = Path("/usr/share/containers/seccomp.json")
U64 = st.integers(min_value=0, max_value=2**64 - 1)

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


def _podman_image_present() -> bool:
    if shutil.which("podman") is None:
        return False
    found = subprocess.run(["podman", "image", "exists", PODMAN_IMAGE], check=False)
    return found.returncode == 0


needs_podman = pytest.mark.skipif(
    not _podman_image_present(), reason=f"needs podman and {PODMAN_IMAGE} (.ci/install-podman)"
)


# --- The seccomp program, run on generated calls ------------------------------------------------


def expected_mode_errno(rule: ModeRule, args: list[int]) -> int | None:
    """What the rule table says: EPERM for a set-id mode (when the call creates, if it can
    also open without creating), else allowed. The kernel reads the low 32 bits or fewer."""
    if rule.flags_arg is not None and not args[rule.flags_arg] & CREATING_FLAGS:
        return None
    return errno.EPERM if args[rule.mode_arg] & SETID_BITS else None


@given(st.sampled_from(MODE_RULES_X86_64), st.lists(U64, min_size=6, max_size=6), st.data())
def test_mode_rules_refuse_exactly_the_set_id_bits(
    rule: ModeRule, args: list[int], data: st.DataObject
) -> None:
    # Half the time, a mode made of ordinary permission bits plus (maybe) set-id bits.
    if data.draw(st.booleans()):
        args[rule.mode_arg] = data.draw(st.integers(0, 0o7777)) | data.draw(
            st.sampled_from([0, stat.S_ISUID, stat.S_ISGID, SETID_BITS, stat.S_IFREG])
        )
    if rule.flags_arg is not None and data.draw(st.booleans()):
        args[rule.flags_arg] = data.draw(
            st.sampled_from([os.O_RDONLY, os.O_WRONLY | os.O_CREAT, os.O_TMPFILE | os.O_RDWR])
        ) | data.draw(st.sampled_from([0, os.O_CLOEXEC, os.O_EXCL, os.O_DIRECTORY]))
    verdict = run_filter(PROGRAM, Call(rule.number, tuple(args)))
    assert errno_of(verdict) == expected_mode_errno(rule, args)


def test_mode_rules_by_example() -> None:
    chmod, openat = 90, 257
    assert errno_of(run_filter(PROGRAM, Call(chmod, (0, 0o4755)))) == errno.EPERM
    assert errno_of(run_filter(PROGRAM, Call(chmod, (0, 0o2775)))) == errno.EPERM
    assert errno_of(run_filter(PROGRAM, Call(chmod, (0, 0o1777)))) is None  # sticky: harmless
    assert errno_of(run_filter(PROGRAM, Call(chmod, (0, 0o755)))) is None
    creating = os.O_CREAT | os.O_WRONLY
    assert errno_of(run_filter(PROGRAM, Call(openat, (0, 0, creating, 0o4755)))) == errno.EPERM
    assert errno_of(run_filter(PROGRAM, Call(openat, (0, 0, os.O_RDONLY, 0o4755)))) is None
    tmpfile = os.O_TMPFILE | os.O_WRONLY
    assert errno_of(run_filter(PROGRAM, Call(openat, (0, 0, tmpfile, 0o2700)))) == errno.EPERM


def expected_socket_errno(family: int, protocol: int) -> int | None:
    family, protocol = family & 0xFFFFFFFF, protocol & 0xFFFFFFFF  # the kernel takes ints
    if family == socket.AF_NETLINK:
        return None if protocol in ALLOWED_NETLINK_PROTOCOLS else errno.EPROTONOSUPPORT
    return None if family in ALLOWED_FAMILIES else errno.EAFNOSUPPORT


@given(
    st.sampled_from(sorted(SOCKET_SYSCALLS_X86_64.values())),
    st.one_of(st.integers(0, 64), U64),
    U64,
    st.one_of(st.sampled_from([0, 4, 9, 15]), U64),
)
def test_socket_families_are_an_allow_list(
    number: int, family: int, kind: int, protocol: int
) -> None:
    verdict = run_filter(PROGRAM, Call(number, (family, kind, protocol)))
    assert errno_of(verdict) == expected_socket_errno(family, protocol)


def test_vsock_is_refused_by_example() -> None:
    for number in SOCKET_SYSCALLS_X86_64.values():
        for family in (socket.AF_VSOCK, socket.AF_VSOCK | 1 << 32):
            verdict = run_filter(PROGRAM, Call(number, (family, socket.SOCK_STREAM, 0)))
            assert errno_of(verdict) == errno.EAFNOSUPPORT


@given(st.integers(0, 600), st.lists(U64, min_size=6, max_size=6))
def test_every_other_call_keeps_its_verdict(number: int, args: list[int]) -> None:
    """The deny-list, the calls whose arguments seccomp cannot read, and everything else."""
    verdict = run_filter(PROGRAM, Call(number, tuple(args)))
    if number in DENIED_SYSCALLS_X86_64.values():
        assert errno_of(verdict) == errno.EPERM
    elif number in UNINSPECTABLE_SYSCALLS_X86_64.values():
        assert errno_of(verdict) == errno.ENOSYS
    elif number == 56:  # clone: only a new namespace is refused
        assert (errno_of(verdict) == errno.EPERM) == bool(args[0] & 0x7E020000 & 0xFFFFFFFF)
    elif number == 16:  # ioctl: TIOCSTI and TIOCLINUX are refused
        assert (errno_of(verdict) == errno.EPERM) == (args[1] & 0xFFFFFFFF in (0x5412, 0x541C))
    elif number in SOCKET_SYSCALLS_X86_64.values():
        assert errno_of(verdict) == expected_socket_errno(args[0], args[2])
    elif number in {rule.number for rule in MODE_RULES_X86_64}:
        (rule,) = [rule for rule in MODE_RULES_X86_64 if rule.number == number]
        assert errno_of(verdict) == expected_mode_errno(rule, args)
    else:
        assert verdict == RET_ALLOW


def test_other_entry_points_are_killed() -> None:
    assert run_filter(PROGRAM, Call(90, (0, 0o4755), arch=0x40000003)) == RET_KILL_PROCESS  # i386
    assert errno_of(run_filter(PROGRAM, Call(0x40000000 | 90, (0, 0o4755)))) == errno.EPERM  # x32


# --- The container engine's profile: the same table, merged into the engine's allow-list -------


def engine_default() -> dict[str, Any]:
    """podman's own default profile where installed, else a small one of the same shape."""
    if ENGINE_DEFAULT_PROFILE.exists():
        loaded: dict[str, Any] = json.loads(ENGINE_DEFAULT_PROFILE.read_text())
        return loaded
    everything = ["chmod", "fchmod", "fchmodat", "open", "openat", "openat2", "socket"]
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.ENOSYS,
        "syscalls": [{"names": [*everything, "read", "clone3"], "action": "SCMP_ACT_ALLOW"}],
    }


PROFILE = container_profile(engine_default())
NAMES = {
    **{rule.number: rule.name for rule in MODE_RULES_X86_64},
    **{number: name for name, number in SOCKET_SYSCALLS_X86_64.items()},
    **{number: name for name, number in DENIED_SYSCALLS_X86_64.items()},
    **{number: name for name, number in UNINSPECTABLE_SYSCALLS_X86_64.items()},
}


INTERESTING = st.sampled_from(
    [0, 1, 2, 4, 9, 10, 15, 16, 40, 1 << 32 | 40, 0o4755, 0o2755, 0o755, os.O_CREAT, 0o20000000]
)


@given(
    st.sampled_from(sorted(NAMES)),
    st.lists(st.one_of(INTERESTING, st.integers(0, 0o20007777), U64), min_size=6, max_size=6),
)
def test_container_profile_agrees_with_the_bpf_program(number: int, args: list[int]) -> None:
    """The profile allows exactly what the BPF program allows, and refuses the rest with the
    same errno, or for a family or netlink protocol no kernel knows, the engine's default."""
    verdict = errno_of(run_filter(PROGRAM, Call(number, tuple(args))))
    answer = profile_errno(PROFILE, NAMES[number], tuple(args))
    if verdict is None:
        assert answer is None
        return
    beyond = number in SOCKET_SYSCALLS_X86_64.values() and (
        args[0] & 0xFFFFFFFF >= FAMILIES_BOUND or args[2] & 0xFFFFFFFF >= NETLINK_PROTOCOLS_BOUND
    )
    assert answer in ((verdict, PROFILE["defaultErrnoRet"]) if beyond else (verdict,))


def test_container_profile_keeps_the_engine_rules_it_does_not_filter() -> None:
    default = engine_default()
    filtered = {name for entry in PROFILE["syscalls"][-200:] for name in entry["names"]}
    filtered &= set(NAMES.values())
    for entry in default["syscalls"]:
        for name in set(entry["names"]) - filtered:
            assert any(name in kept["names"] for kept in PROFILE["syscalls"]), name
    assert PROFILE["architectures"] == ["SCMP_ARCH_X86_64"]
    assert PROFILE["defaultAction"] == default["defaultAction"]


# --- Real sandboxes ------------------------------------------------------------------------------


def set_id_files(directory: Path, *, planted: Path) -> list[str]:
    """What the host sees: files under ``directory`` with a set-id bit or a file capability."""
    found = []
    for path in [directory, *directory.rglob("*")]:
        if path == planted:
            continue
        if path.lstat().st_mode & SETID_BITS:
            found.append(f"{path}: {oct(path.lstat().st_mode)}")
        if not path.is_symlink() and "security.capability" in os.listxattr(path):
            found.append(f"{path}: security.capability")
    return found


def plant_setuid_file(workspace: Path, owner: SandboxUser) -> Path:
    """A setuid executable of the workspace owner's, put there by the host: what cp -p, tar -xp
    and shutil.copy2 would carry over (mode set after chown, which clears set-id bits)."""
    planted = workspace / "planted"
    planted.write_text("#!/bin/sh\nid\n")
    os.chown(planted, owner.uid, owner.gid)
    planted.chmod(0o4755)
    return planted


async def next_call_works(*options: str, user: SandboxUser, image: str = "host") -> None:
    result = await wrap(*options, command=["sh", "-c", "echo next"], image=image, user=user)
    assert (result.returncode, result.stdout) == (0, b"next\n"), result.stderr.decode()


def assert_setid_routes_fail(outcome: dict[str, Any]) -> None:
    for route, result in outcome.items():
        if route.endswith("(allowed)"):
            assert result == "ok", route
        elif route == "openat2(2)":
            assert result == errno.ENOSYS, route
        elif "(2)" in route or route.startswith(("os.", "shutil.", "setxattr", "O_", "mkdir")):
            assert result == errno.EPERM, (route, result)
        else:  # a tool: it may report the refusal or carry on without the bits
            assert result in ("ok", "failed") or "not permitted" in result, (route, result)


async def run_setid_routes(
    workspace: Path, user: SandboxUser, *options: str, image: str = "host", python: str = ""
) -> dict[str, Any]:
    result = await wrap(
        *options,
        *["--volume", f"{workspace}:/ws", "--env", "WS=/ws", "--env", "PLANTED=/ws/planted"],
        command=[python or user.python, "-c", SETID_ROUTES],
        image=image,
        user=user,
    )
    assert result.returncode == 0, result.stderr.decode()
    outcome: dict[str, Any] = json.loads(result.stdout.decode().splitlines()[-1])
    return outcome


@needs_bwrap
async def test_no_setuid_or_setgid_file_reaches_the_host(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    """The workspace owner's uid (0 for a root-owned workspace) tries every route to a set-id
    or file-capability executable; the host sees none, and ordinary modes still work."""
    planted = plant_setuid_file(workspace, sandbox_user)
    outcome = await run_setid_routes(workspace, sandbox_user)
    assert_setid_routes_fail(outcome)
    assert set_id_files(workspace, planted=planted) == []
    assert planted.stat().st_mode & SETID_BITS == 0  # written to by the sandbox
    assert (workspace / "z").stat().st_mode & 0o7777 == 0o755
    assert (workspace / "t1").stat().st_mode & 0o7777 == 0o1777
    assert (workspace / "z").stat().st_uid == sandbox_user.uid
    await next_call_works("--volume", f"{workspace}:/ws", user=sandbox_user)


def assert_socket_families_refused(outcome: dict[str, Any]) -> None:
    names = outcome.pop("if_nameindex (allowed)")
    assert "lo" in names
    for route, result in outcome.items():
        if route.endswith("(allowed)"):
            assert result == "ok", route
        elif route.startswith("AF_NETLINK"):
            assert result == errno.EPROTONOSUPPORT, (route, result)
        else:
            assert result == errno.EAFNOSUPPORT, (route, result)


@needs_bwrap
async def test_vsock_and_other_socket_families_fail(sandbox_user: SandboxUser) -> None:
    """vsock reaches the hypervisor's host side whatever the network namespace: refused, like
    every family but unix, IPv4, IPv6 and route/diagnostics netlink (which getifaddrs uses)."""
    result = await wrap(command=[sandbox_user.python, "-c", SOCKET_FAMILIES], user=sandbox_user)
    assert result.returncode == 0, result.stderr.decode()
    outcome = json.loads(result.stdout.decode().splitlines()[-1])
    assert {"ip (allowed)", "ss (allowed)"} <= set(outcome)  # the host's own tools ran
    assert_socket_families_refused(outcome)
    await next_call_works(user=sandbox_user)


# The test image's python3-minimal lacks json and ctypes, which the probes need: the host's
# Debian Python (the same release) lends its standard library, read-only.
HOST_STDLIB = Path("/usr/lib/python3.11")
needs_host_stdlib = pytest.mark.skipif(
    not (HOST_STDLIB / "ctypes").is_dir(), reason=f"needs Debian's Python 3.11 in {HOST_STDLIB}"
)


def podman_options() -> list[str]:
    path = "/opt/host-stdlib:/opt/host-stdlib/lib-dynload"
    volume = f"{HOST_STDLIB}:/opt/host-stdlib:ro"
    return ["--backend", "podman", "--env", f"PYTHONPATH={path}", "--volume", volume]


@needs_podman
@needs_host_stdlib
async def test_podman_no_setuid_or_setgid_file_reaches_the_host(tmp_path: Path) -> None:
    """The same routes in a rootful podman container (uid 0, the host's root): the rules are in
    the seccomp profile the warden hands podman, merged into podman's own."""
    from tests.support.sandbox_users import this_process_user

    root = this_process_user()
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    planted = plant_setuid_file(workspace, root)
    podman = podman_options()
    outcome = await run_setid_routes(workspace, root, *podman, image=PODMAN_IMAGE, python="python3")
    assert_setid_routes_fail(outcome)
    assert set_id_files(workspace, planted=planted) == []
    await next_call_works(*podman, user=root, image=PODMAN_IMAGE)


@needs_podman
@needs_host_stdlib
async def test_podman_vsock_and_other_socket_families_fail() -> None:
    from tests.support.sandbox_users import this_process_user

    root = this_process_user()
    podman = podman_options()
    result = await wrap(
        *podman, command=["python3", "-c", SOCKET_FAMILIES], image=PODMAN_IMAGE, user=root
    )
    assert result.returncode == 0, result.stderr.decode()
    assert_socket_families_refused(json.loads(result.stdout.decode().splitlines()[-1]))
    await next_call_works(*podman, user=root, image=PODMAN_IMAGE)


def masking_directories() -> list[str]:
    """The empty directories the sandbox gets over host directories it may not see: /etc's
    that others may not enter, and the /proc ones Docker masks too (where this host has them)."""
    found = [path for path in ("/proc/acpi", "/proc/asound", "/proc/scsi") if os.path.isdir(path)]
    for directory, subdirectories, _files in os.walk("/etc"):
        for name in list(subdirectories):
            path = os.path.join(directory, name)
            if not os.path.islink(path) and os.stat(path).st_mode & 0o005 != 0o005:
                found.append(path)
                subdirectories.remove(name)
    return found


DEVICES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]


@needs_bwrap
async def test_dev_and_dev_shm_are_bounded_and_masks_stay_empty(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    """/dev is read-only, /dev/shm stops at its bound (here --tmp-size, smaller than 64 MiB),
    the tmpfs that mask host directories cannot be chmod-ed and filled, and the only writable
    mounts are /tmp, /dev/shm, the volume, and kernel file systems (devices, ptys, /proc)."""
    targets = ["/dev", "/dev/shm", *masking_directories()]
    result = await wrap(
        *["--tmp-size", "16M", "--memory", "128M", "--volume", f"{workspace}:/ws"],
        command=[sandbox_user.python, "-c", FILL_MEMORY_FILE_SYSTEMS, *targets],
        user=sandbox_user,
    )
    assert result.returncode == 0, result.stderr.decode()
    outcome = json.loads(result.stdout.decode().splitlines()[-1])
    writable = set(outcome.pop("writable mounts"))
    assert outcome.pop("/dev") == ["EROFS", 0]
    assert outcome.pop("/dev/shm") == ["ENOSPC", 16 << 20]
    for masked, (code, written) in outcome.items():
        assert (code, written) in (("EROFS", 0), ("EACCES", 0)), masked
    assert writable <= {"/tmp", "/dev/shm", "/ws", "/proc", "/dev/pts", *DEVICES}, writable
    await next_call_works(user=sandbox_user)


@needs_bwrap
async def test_dev_shm_works_for_every_user(sandbox_user: SandboxUser, workspace: Path) -> None:
    """POSIX shared memory and semaphores (multiprocessing) work for the workspace owner,
    whoever that is (the sandbox's /dev/shm is mode 1777)."""
    result = await wrap(
        "--volume",
        f"{workspace}:/ws",
        command=[sandbox_user.python, "-c", SHARED_MEMORY],
        user=sandbox_user,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout.decode().splitlines()[-1]) == {"shared memory": "hello"}


@needs_podman
@needs_host_stdlib
async def test_podman_dev_shm_is_bounded_and_nothing_else_is_writable() -> None:
    """podman's /dev/shm has the same bound (--shm-size); its /dev is the engine's own 64 MiB
    tmpfs; no /run or /var/tmp tmpfs (podman --read-only would add unbounded ones)."""
    from tests.support.sandbox_users import this_process_user

    root = this_process_user()
    result = await wrap(
        *podman_options(),
        *["--tmp-size", "16M", "--memory", "128M"],
        command=["python3", "-c", FILL_MEMORY_FILE_SYSTEMS, "/dev/shm", "/run", "/var/tmp"],
        image=PODMAN_IMAGE,
        user=root,
    )
    assert result.returncode == 0, result.stderr.decode()
    outcome = json.loads(result.stdout.decode().splitlines()[-1])
    assert outcome["/dev/shm"] == ["ENOSPC", 16 << 20]
    assert outcome["/run"] == ["EROFS", 0]
    assert outcome["/var/tmp"] == ["EROFS", 0]
    assert "/run" not in outcome["writable mounts"]
    assert "/var/tmp" not in outcome["writable mounts"]
    result = await wrap(
        *podman_options(), command=["python3", "-c", SHARED_MEMORY], image=PODMAN_IMAGE, user=root
    )
    assert json.loads(result.stdout.decode().splitlines()[-1]) == {"shared memory": "hello"}


@contextlib.contextmanager
def private_host_files(owner: tuple[int, int], runtime: Path) -> Iterator[list[Path]]:
    """Files only ``owner`` may read, in trees the sandbox sees read-only: under /usr/local (a
    0600 file, a 0640 one, one in a 0700 directory) and in the tool server's runtime."""
    tag = uuid.uuid4().hex
    directory = Path(f"/usr/local/share/trio-sandbox-escape-{tag}")
    files = [
        Path(f"/usr/local/share/trio-sandbox-escape-{tag}-0600"),
        Path(f"/usr/local/share/trio-sandbox-escape-{tag}-0640"),
        directory / "inside-0700",
        runtime / f"trio-sandbox-escape-{tag}-0600",
    ]
    directory.mkdir(mode=0o700)
    os.chown(directory, *owner)
    try:
        for path in files:
            path.write_text(f"secret {tag}")
            os.chown(path, *owner)
            path.chmod(0o640 if path.name.endswith("0640") else 0o600)
        yield files
    finally:
        for path in files:
            path.unlink(missing_ok=True)
        directory.rmdir()


@needs_bwrap
@pytest.mark.parametrize("with_workspace", [False, True], ids=["no-volume", "own-workspace"])
async def test_files_only_the_sandbox_uid_may_read_stay_unreadable(
    sandbox_user: SandboxUser, workspace: Path, with_workspace: bool
) -> None:
    """As root, the sandbox runs as the workspace owner (uid 0 for root's own workspace) and the
    host's trees are bound id-mapped so that this uid owns nothing in them: root's private
    files under /usr and in the runtime are unreadable, not just /etc's, and /proc's root-only
    files are masked; files it creates in the workspace still belong to the workspace owner on
    the host."""
    volume = ["--volume", f"{workspace}:/ws"] if with_workspace else []
    uid = sandbox_user.uid if with_workspace else 65534
    runtime = site_directory(sandbox_user)
    for owner in {(0, 0), (uid, uid)} if sandbox_user.is_root else {(0, 0)}:
        with private_host_files(owner, runtime) as files:
            inside = [runtime_path(path, runtime) for path in files] + root_only_proc_files()
            script = (
                READ_FILES + "\nopen('/ws/made', 'w').close()" if with_workspace else READ_FILES
            )
            result = await wrap(
                *volume, command=[sandbox_user.python, "-c", script, *inside], user=sandbox_user
            )
            assert result.returncode == 0, result.stderr.decode()
            outcome = json.loads(result.stdout.decode().splitlines()[-1])
            assert set(outcome.values()) == {"Permission denied"}, (owner, outcome)
        if with_workspace:
            made = workspace / "made"
            assert (made.stat().st_uid, made.stat().st_gid) == (sandbox_user.uid, sandbox_user.gid)
            made.unlink()
    assert "idmapped" not in host_mount_table()  # nothing was mounted on the host
    await next_call_works(*volume, user=sandbox_user)


def root_only_proc_files() -> list[str]:
    """The kernel's own files in /proc that only root may read (slabinfo, vmallocinfo, ...)."""
    found = []
    for path in Path("/proc").iterdir():
        mode = path.lstat().st_mode
        if not path.name.isdigit() and stat.S_ISREG(mode) and not mode & 0o004:
            found.append(str(path))
    assert "/proc/slabinfo" in found
    return found


def host_mount_table() -> str:
    return Path("/proc/self/mountinfo").read_text()


def site_directory(user: SandboxUser) -> Path:
    """The site-packages of the interpreter ``user`` runs the sandbox's tool server with."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    found = subprocess.run([user.python, "-c", code], capture_output=True, check=True)
    return Path(found.stdout.decode().strip())


def runtime_path(path: Path, runtime: Path) -> str:
    """Where the sandbox sees a host file: the runtime's site directory is bound elsewhere."""
    if path.parent == runtime and not str(runtime).startswith("/usr/"):
        return f"/.trio-sandbox/site/0/{path.name}"
    return str(path)


@given(st.integers(0, 2**32 - 2))
def test_the_id_map_leaves_out_exactly_the_sandbox_id(own: int) -> None:
    covered = []
    for line in id_map_without(own).splitlines():
        inside, outside, count = map(int, line.split())
        assert inside == outside
        covered.append((inside, inside + count))
    covered.sort()
    assert sum(end - start for start, end in covered) == 2**32 - 2  # every id but own and -1
    assert all(not start <= own < end for start, end in covered)
    assert len(covered) <= 2


@pytest.mark.skipif(os.geteuid() != 0, reason="id-mapped mounts need root")
def test_a_file_system_without_id_maps_is_refused_with_its_reason() -> None:
    with pytest.raises(IdmapUnavailableError, match="/sys/fs/cgroup"):
        idmap_trees(["/usr", "/sys/fs/cgroup"], uid=0, gid=0, also_bound=[])


@contextlib.contextmanager
def host_abstract_listener() -> Iterator[str]:
    """An abstract unix socket listening in the host's network namespace."""
    name = f"trio-sandbox-escape-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind("\0" + name)
        listener.listen()
        yield name


def plant_device_node(workspace: Path, owner: SandboxUser) -> None:
    """A character device with /dev/null's numbers, as a volume could hold one."""
    node = workspace / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chown(node, owner.uid, owner.gid)


def assert_no_other_way_out(outcome: dict[str, Any], *, bwrap: bool) -> None:
    assert outcome.pop("ordinary socket (allowed)") == "AF_INET"
    inherited = outcome.pop("inherited descriptors")
    targets = outcome.pop("descriptor targets")
    assert inherited == [], targets
    expected = {
        "connect to the host's abstract socket": {"ECONNREFUSED"},
        "TIOCSTI on a pty": {"EPERM"},
        "open /dev/tty": {"ENXIO"},
        "add_key": {"EPERM"},
        "keyctl join session keyring": {"EPERM"},
        "mknod a character device": {"EPERM"},
        "open a device node in a volume": {"EACCES"},
        "hard link to a host binary": {"EXDEV", "EPERM", "ENOENT"},
        "ptrace": {"EPERM"},
        "userfaultfd": {"EPERM"},
        "io_uring_setup": {"EPERM"},
        "perf_event_open": {"EPERM"},
        "list /sys": {"ENOENT"} if bwrap else {"ENOENT", "ok"},
    }
    for route, result in outcome.items():
        assert result in expected.pop(route), (route, result)
    assert not expected, expected


@needs_bwrap
async def test_no_other_way_out(sandbox_user: SandboxUser, workspace: Path) -> None:
    """Abstract unix sockets belong to the network namespace (the host's are out of reach);
    no terminal to inject into; no keyrings, devices (nodev volumes, no mknod), hard links to
    host files, ptrace, userfaultfd, io_uring or perf; no /sys; no descriptor of the warden's."""
    plant_device_node(workspace, sandbox_user)
    with host_abstract_listener() as name:
        result = await wrap(
            *["--volume", f"{workspace}:/ws", "--env", "WS=/ws"],
            command=[sandbox_user.python, "-c", OTHER_WAYS_OUT, name],
            user=sandbox_user,
        )
    assert result.returncode == 0, result.stderr.decode()
    assert_no_other_way_out(json.loads(result.stdout.decode().splitlines()[-1]), bwrap=True)
    assert not (workspace / "su").exists()
    assert not (workspace / "mem").exists()
    await next_call_works(user=sandbox_user)


@needs_podman
@needs_host_stdlib
async def test_podman_no_other_way_out(tmp_path: Path) -> None:
    from tests.support.sandbox_users import this_process_user

    root = this_process_user()
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    plant_device_node(workspace, root)
    with host_abstract_listener() as name:
        result = await wrap(
            *podman_options(),
            *["--volume", f"{workspace}:/ws", "--env", "WS=/ws"],
            command=["python3", "-c", OTHER_WAYS_OUT, name],
            image=PODMAN_IMAGE,
            user=root,
        )
    assert result.returncode == 0, result.stderr.decode()
    assert_no_other_way_out(json.loads(result.stdout.decode().splitlines()[-1]), bwrap=False)
    await next_call_works(*podman_options(), user=root, image=PODMAN_IMAGE)


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="the id-mapped view is the root warden's")
async def test_without_an_id_map_the_warden_says_what_is_readable() -> None:
    """A volume of the whole root leaves no directory to stage the id-mapped trees in: the
    sandbox still runs, and the warden warns that uid 0 can read root's files."""
    result = await wrap("--volume", "/:/host:ro", command=["sh", "-c", "echo ran"])
    assert (result.returncode, result.stdout) == (0, b"ran\n"), result.stderr.decode()
    assert b"bound without an id map (no free directory to stage them in" in result.stderr
    assert b"the sandbox, as uid 0, can read files outside /etc that only uid 0" in result.stderr


# (the volume's source below the workspace, the link the sandbox plants, where it points)
PLANTED_LINKS = [
    pytest.param("cache", "cache", None, id="last-component"),
    pytest.param("sub/share", "sub", "/usr/local", id="middle-component-read-only"),
]


@needs_bwrap
@pytest.mark.parametrize(("source", "link", "target"), PLANTED_LINKS)
async def test_a_link_planted_in_a_volume_never_redirects_the_next_launch(
    sandbox_user: SandboxUser, workspace: Path, source: str, link: str, target: str | None
) -> None:
    """Two volumes, one inside the other: the sandbox replaces a directory on the inner one's
    path with a symbolic link to a host directory it was not given (its user's home, or
    /usr/local). The next launch refuses the volume instead of binding that directory (or
    running as its owner); the same workspace alone still works."""
    target = target or str(sandbox_user.home)
    inner = workspace / source
    inner.mkdir(parents=True)
    for path in (inner, *inner.relative_to(workspace).parents):
        os.chown(workspace / path, sandbox_user.uid, sandbox_user.gid)
    suffix = ":ro" if target.startswith("/usr") else ""
    volumes = ["--volume", f"{workspace}:/work", "--volume", f"{inner}:/inner{suffix}"]
    plant = f"rm -rf /work/{link} && ln -s {target} /work/{link} && echo planted"
    result = await wrap(*volumes, command=["sh", "-c", plant], user=sandbox_user)
    assert (result.returncode, result.stdout) == (0, b"planted\n"), result.stderr.decode()
    result = await wrap(*volumes, command=["ls", "-a", "/inner"], user=sandbox_user)
    assert result.returncode == 125, result.stdout
    assert b"is a symbolic link inside a writable volume" in result.stderr
    assert result.stdout == b""
    await next_call_works("--volume", f"{workspace}:/work", user=sandbox_user)


@needs_podman
async def test_podman_a_link_planted_in_a_volume_never_redirects_the_next_launch(
    tmp_path: Path,
) -> None:
    from tests.support.sandbox_users import this_process_user

    root = this_process_user()
    workspace = tmp_path / "workspace"
    (workspace / "cache").mkdir(parents=True)
    volumes = ["--volume", f"{workspace}:/work", "--volume", f"{workspace}/cache:/cache"]
    podman = ("--backend", "podman")
    plant = "rmdir /work/cache && ln -s /root /work/cache && echo planted"
    result = await wrap(*podman, *volumes, command=["sh", "-c", plant], image=PODMAN_IMAGE)
    assert (result.returncode, result.stdout) == (0, b"planted\n"), result.stderr.decode()
    result = await wrap(*podman, *volumes, command=["ls", "-a", "/cache"], image=PODMAN_IMAGE)
    assert result.returncode == 125
    assert b"is a symbolic link inside a writable volume" in result.stderr
    await next_call_works(*podman, "--volume", f"{workspace}:/work", user=root, image=PODMAN_IMAGE)


def opened_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def test_volume_sources_follow_the_hosts_links_only(tmp_path: Path) -> None:
    """Links outside writable volumes (the host's own) are followed, with .. and absolute
    targets as the kernel would; a link inside a writable volume is refused, wherever on the
    path; a loop of links ends in an error."""
    work = tmp_path / "work"
    (work / "real").mkdir(parents=True)
    (tmp_path / "host-link").symlink_to(work)
    (work / "planted").symlink_to("/usr")
    (work / "loop").symlink_to("loop")
    writable = [str(work)]
    assert opened_path(open_source(f"{tmp_path}/host-link/real", writable)) == f"{work}/real"
    assert opened_path(open_source(f"{work}/real/../real", writable)) == f"{work}/real"
    assert opened_path(open_source(f"{work}/planted/share", [])) == "/usr/share"
    for path in (f"{work}/planted/share", f"{tmp_path}/host-link/planted", f"{work}/loop"):
        with pytest.raises(WrapRequestError, match="symbolic link inside a writable volume"):
            open_source(path, writable)
    with pytest.raises(WrapRequestError, match="too many levels"):
        open_source(f"{work}/loop", [])
    with pytest.raises(OSError, match=f"cannot open volume {work}/missing"):
        open_source(f"{work}/missing", writable)


@needs_podman
@needs_host_stdlib
async def test_podman_root_only_proc_files_are_masked() -> None:
    """A podman container's root is the host's root (rootful, no user namespace): /proc's
    root-only files are masked there too; it sees no host tree but its image and volumes."""
    from tests.support.sandbox_users import this_process_user

    files = root_only_proc_files()
    result = await wrap(
        *podman_options(),
        command=["python3", "-c", READ_FILES, *files],
        image=PODMAN_IMAGE,
        user=this_process_user(),
    )
    assert result.returncode == 0, result.stderr.decode()
    outcome = json.loads(result.stdout.decode().splitlines()[-1])
    assert set(outcome) == set(files)
    for path, text in outcome.items():
        assert text in ("", "Permission denied", "Operation not permitted"), (path, text[:80])


@needs_bwrap
async def test_a_link_planted_at_a_nested_mount_point_is_refused(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    """A volume mounted inside another: the sandbox replaces its mount point (in the outer
    volume) with a link, for bubblewrap to mount the inner volume wherever it points next time.
    The next launch refuses; the outer volume alone still works."""
    inner = workspace.parent / f"{workspace.name}-inner"
    inner.mkdir()
    os.chown(inner, sandbox_user.uid, sandbox_user.gid)
    (workspace / "inner").mkdir()
    os.chown(workspace / "inner", sandbox_user.uid, sandbox_user.gid)
    volumes = ["--volume", f"{workspace}:/work", "--volume", f"{inner}:/work/inner"]
    try:
        plant = "rmdir /work/inner && ln -s ../../../../usr/bin /work/inner"
        result = await wrap(
            "--volume", f"{workspace}:/work", command=["sh", "-c", plant], user=sandbox_user
        )
        assert result.returncode == 0, result.stderr.decode()
        result = await wrap(*volumes, command=["ls", "/work/inner"], user=sandbox_user)
        assert result.returncode == 125, result.stdout
        assert b"is a symbolic link inside volume /work" in result.stderr
        await next_call_works("--volume", f"{workspace}:/work", user=sandbox_user)
    finally:
        shutil.rmtree(inner)
