"""Escape attempts from inside the default (bubblewrap, `host` image) sandbox, as root and as
an ordinary user (the ``sandbox_user`` fixture runs each test for both).

Each test runs the real warden CLI and tries the escape for real; the protection it covers
is named in the docstring (NOTES.md records that each test fails without it)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from tests.support.sandbox_users import SandboxUser
from tests.warden.warden_harness import (
    HANG_GUARD_SECONDS,
    host_path_exists,
    live_pids_with,
    probe,
    quote,
    read_host_file,
    start_host_sleep,
    unique_marker,
    warden_argv,
    wrap,
)

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

TRY_WRITE = """
import json, sys
results = {}
for path in sys.argv[1:]:
    try:
        with open(path, "w") as f:
            f.write("escaped")
        results[path] = "written"
    except OSError as exc:
        results[path] = exc.strerror
print(json.dumps(results))
"""


async def test_writes_outside_volumes_fail(sandbox_user: SandboxUser, workspace: Path) -> None:
    """Read-only root (`--remount-ro /`), read-only /usr and /etc, a read-only runtime."""
    volume = trio.Path(workspace)
    targets = [
        "/escape",
        "/usr/escape",
        "/etc/escape",
        "/root/escape",
        "/work/escape",
        "/.trio-sandbox/escape",
        "/.trio-sandbox/site/escape",
        "/tmp/inside-only",
        "/data/kept",
    ]
    result = await wrap(
        "--volume",
        f"{volume}:/data",
        command=[sandbox_user.python, "-c", TRY_WRITE, *targets],
        user=sandbox_user,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    for path in targets[:-2]:
        assert outcome[path] != "written", path
    assert outcome["/tmp/inside-only"] == "written"  # a private tmpfs
    assert outcome["/data/kept"] == "written"
    assert await (volume / "kept").read_text() == "escaped"
    for path in ("/escape", "/usr/escape", "/etc/escape"):
        assert not host_path_exists(path)


async def test_read_only_volume_is_read_only(sandbox_user: SandboxUser, workspace: Path) -> None:
    """`:ro` volumes are bound with --ro-bind."""
    # The user's own files, which they may write: only the read-only bind can stop the writes.
    (workspace / "file").write_text("original")
    os.chown(workspace / "file", sandbox_user.uid, sandbox_user.gid)
    outcome = await probe(
        "import json, os\n"
        "read = open('/ro/file').read()\n"
        "try:\n"
        "    open('/ro/file', 'w').write('changed'); wrote = 'written'\n"
        "except OSError as exc:\n"
        "    wrote = exc.strerror\n"
        "try:\n"
        "    open('/ro/new', 'w').write('new'); created = 'written'\n"
        "except OSError as exc:\n"
        "    created = exc.strerror\n"
        "print(json.dumps([read, wrote, created]))",
        "--volume",
        f"{workspace}:/ro:ro",
        user=sandbox_user,
    )
    assert outcome == ["original", "Read-only file system", "Read-only file system"]
    assert (workspace / "file").read_text() == "original"


@pytest.mark.parametrize("with_workspace", [False, True], ids=["no-volume", "own-workspace"])
async def test_shadow_is_unreadable(
    sandbox_user: SandboxUser, workspace: Path, with_workspace: bool
) -> None:
    """The masking of files others may not read (/etc/shadow trap) — even when the sandbox runs
    as uid 0 because root owns the workspace."""
    assert read_host_file("/etc/shadow").startswith(b"root:")
    volume = ["--volume", f"{workspace}:/work"] if with_workspace else []
    outcome = await probe(
        "import json\n"
        "out = {}\n"
        "for path in ('/etc/shadow', '/etc/gshadow'):\n"
        "    try:\n"
        "        out[path] = open(path).read()\n"
        "    except OSError as exc:\n"
        "        out[path] = 'error: ' + exc.strerror\n"
        "print(json.dumps(out))",
        *volume,
        user=sandbox_user,
    )
    assert isinstance(outcome, dict)
    for path, text in outcome.items():
        assert "root:" not in text, path


KERNEL_WRITES = r"""
import json, os
out = {}
for path in ("/proc/sys/kernel/domainname", "/proc/sys/vm/drop_caches"):
    try:
        with open(path, "w") as f:
            f.write("3" if "drop" in path else "escaped")
        out[path] = "written"
    except OSError as exc:
        out[path] = exc.strerror
# Opened for writing only, never written: a writable sysrq-trigger would let uid 0 crash the
# host. (Absent on kernels built without it.)
for path in ("/proc/sysrq-trigger", "/proc/kcore", "/proc/keys", "/proc/timer_list"):
    try:
        os.close(os.open(path, os.O_WRONLY))
        out[path] = "opened for writing"
    except OSError as exc:
        out[path] = exc.strerror
out["caps"] = [line.split()[1] for line in open("/proc/self/status") if line.startswith("Cap")]
out["uid"] = os.getuid()
print(json.dumps(out))
"""


@pytest.mark.parametrize("with_workspace", [False, True], ids=["no-volume", "own-workspace"])
async def test_kernel_interfaces_are_read_only(
    sandbox_user: SandboxUser, workspace: Path, with_workspace: bool
) -> None:
    """`--ro-bind /proc/sys /proc/sys`, the masked and read-only /proc entries, and no
    capability at all (securebits locked, empty bounding set): not even as uid 0."""
    before = read_host_file("/proc/sys/kernel/domainname")
    volume = ["--volume", f"{workspace}:/work"] if with_workspace else []
    outcome = await probe(KERNEL_WRITES, *volume, user=sandbox_user)
    assert isinstance(outcome, dict)
    caps = outcome.pop("caps")
    uid = outcome.pop("uid")
    assert "written" not in outcome.values(), outcome
    assert "opened for writing" not in outcome.values(), outcome
    assert set(caps) == {"0000000000000000"}, caps
    assert read_host_file("/proc/sys/kernel/domainname") == before
    if with_workspace and sandbox_user.is_root:
        assert uid == 0  # root's workspace: the hardening above is what protects the host


async def test_host_processes_are_invisible(sandbox_user: SandboxUser) -> None:
    """`--unshare-pid` with a fresh /proc: the host's processes do not exist inside."""
    marker = unique_marker()
    with start_host_sleep(marker) as host_process:
        try:
            outcome = await probe(
                "import json, os\n"
                "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
                "lines = []\n"
                "for p in pids:\n"
                "    try:\n"
                "        lines.append(open(f'/proc/{p}/cmdline', 'rb').read().decode())\n"
                "    except OSError:\n"
                "        pass\n"
                # Spelt in two halves: this very command line must not contain it.
                f"marker = {quote(marker[:4])} + {quote(marker[4:])}\n"
                "print(json.dumps([len(pids), any(marker in line for line in lines)]))",
                user=sandbox_user,
            )
        finally:
            host_process.kill()
    assert isinstance(outcome, list)
    process_count, marker_seen = outcome
    assert marker_seen is False
    assert process_count <= 3  # init, the python command, maybe a transient child


async def test_no_network_to_host_loopback_and_no_name_resolution(
    sandbox_user: SandboxUser,
) -> None:
    """`--unshare-net`: only the sandbox's own loopback exists."""
    accepted: list[object] = []
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def record(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, record, listeners)
        outcome = await probe(
            "import json, socket\n"
            "out = {}\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=5); out['tcp'] = 'ok'\n"
            "except OSError as exc:\n"
            "    out['tcp'] = type(exc).__name__\n"
            "for name in ('example.org', 'example.com'):\n"
            "    try:\n"
            "        socket.getaddrinfo(name, 443); out[name] = 'resolved'\n"
            "    except OSError as exc:\n"
            "        out[name] = type(exc).__name__\n"
            "print(json.dumps(out))",
            user=sandbox_user,
        )
        nursery.cancel_scope.cancel()
    assert outcome == {
        "tcp": "ConnectionRefusedError",
        "example.org": "gaierror",
        "example.com": "gaierror",
    }
    assert accepted == []


PRIVILEGED_CALLS = r"""
import ctypes, json, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
out = {}
out["ptrace_traceme"] = libc.ptrace(0, 0, 0, 0) == 0
child = subprocess.Popen(["sleep", "30"])
out["ptrace_attach_child"] = libc.ptrace(16, child.pid, 0, 0) == 0
child.kill(); child.wait()
out["mount"] = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) == 0
out["unshare_user"] = libc.unshare(0x10000000) == 0
for name, argv in {
    "unshare_cmd": ["unshare", "--user", "--map-root-user", "true"],
    "mount_in_userns": ["unshare", "-Urm", "mount", "-t", "tmpfs", "none", "/tmp"],
}.items():
    out[name] = subprocess.run(argv, capture_output=True).returncode == 0
print(json.dumps(out))
"""


async def test_ptrace_mount_and_unshare_fail(sandbox_user: SandboxUser) -> None:
    """The seccomp deny-list (ptrace, mount, unshare, clone with namespace flags)."""
    outcome = await probe(PRIVILEGED_CALLS, user=sandbox_user)
    assert outcome == {
        "ptrace_traceme": False,
        "ptrace_attach_child": False,
        "mount": False,
        "unshare_user": False,
        "unshare_cmd": False,
        "mount_in_userns": False,
    }


ENV_SCAN = r"""
import json, os
secret = os.environ.get("PASSED_IN", "")
seen = {"self": "LAUNCHER_SECRET" in os.environ, "passed_in": secret}
for pid in [p for p in os.listdir("/proc") if p.isdigit()] + ["1", "self"]:
    try:
        seen[pid] = b"warden-launcher-secret" in open(f"/proc/{pid}/environ", "rb").read()
    except OSError as exc:
        seen[pid] = exc.strerror
print(json.dumps(seen))
"""


async def test_launcher_environment_is_invisible_inside(sandbox_user: SandboxUser) -> None:
    """`--clearenv` for the command, and bwrap started with a scrubbed environment so its
    init (PID 1 inside) does not carry the launcher's variables either."""
    marker = unique_marker()
    env = sandbox_user.env({"LAUNCHER_SECRET": "warden-launcher-secret"})
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with trio.open_nursery() as nursery:
            argv = [
                *warden_argv(sandbox_user),
                *["--env", "PASSED_IN=visible", "host", "--"],
                # The interpreter is an argument (translated to its sandbox path by the
                # warden), not part of the shell text.
                *["sh", "-c", f'"$0" -c "$1"; sleep {marker}', sandbox_user.python, ENV_SCAN],
            ]
            run = functools.partial(
                trio.run_process, argv, env=env, stdout=subprocess.PIPE, check=False
            )
            warden: trio.Process = await nursery.start(run)
            assert warden.stdout is not None
            output = b""
            while not output.endswith(b"\n"):
                output += await warden.stdout.receive_some()
            # From the host, as root: every process of this sandbox, bwrap included.
            sandbox_pids = live_pids_with(marker)
            assert len(sandbox_pids) >= 4  # bwrap, its init, sh, sleep
            for pid in sandbox_pids:
                if pid == warden.pid:
                    continue
                assert b"warden-launcher-secret" not in read_host_file(f"/proc/{pid}/environ")
            warden.send_signal(2)
            await warden.wait()
    seen = json.loads(output)
    assert seen.pop("self") is False
    assert seen.pop("passed_in") == "visible"
    assert True not in seen.values(), seen


CREATE_FILES = r"""
import json, os, pathlib
pathlib.Path("/work/new.txt").write_text("made inside")
os.mkdir("/work/sub")
pathlib.Path("/work/sub/deeper.txt").write_text("also")
print(json.dumps({"uid": os.getuid(), "gid": os.getgid()}))
"""


def host_owners(workspace: Path) -> set[tuple[int, int]]:
    made = [workspace / "new.txt", workspace / "sub", workspace / "sub" / "deeper.txt"]
    return {(path.stat().st_uid, path.stat().st_gid) for path in made}


async def test_files_made_in_the_workspace_belong_to_its_owner(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    """Root: the sandbox runs as the workspace's owner; an ordinary user: as themselves. The
    workspace is 0700 and nothing was chmodded: the owner's own permissions suffice."""
    outcome = await probe(CREATE_FILES, "--volume", f"{workspace}:/work", user=sandbox_user)
    assert host_owners(workspace) == {(sandbox_user.uid, sandbox_user.gid)}
    assert outcome == {"uid": sandbox_user.uid, "gid": sandbox_user.gid}


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can sandbox another user's files")
async def test_a_root_warden_works_as_the_owner_of_another_users_workspace(
    tmp_path: Path,
) -> None:
    """A root warden (an agent in a container) on a project owned by uid 1000."""
    workspace = tmp_path / "project"
    workspace.mkdir(mode=0o700)
    os.chown(workspace, 1000, 1000)
    outcome = await probe(CREATE_FILES, "--volume", f"{workspace}:/work")
    assert host_owners(workspace) == {(1000, 1000)}
    assert outcome == {"uid": 1000, "gid": 1000}


async def test_user_option_chooses_the_uid(sandbox_user: SandboxUser, workspace: Path) -> None:
    """`--user UID:GID`: as root, the files' owner on the host; as an ordinary user, the ids
    seen inside (the user namespace still maps them to the user on the host)."""
    if sandbox_user.is_root:
        os.chown(workspace, 4242, 4343)
    outcome = await probe(
        CREATE_FILES, "--user", "4242:4343", "--volume", f"{workspace}:/work", user=sandbox_user
    )
    assert outcome == {"uid": 4242, "gid": 4343}
    expected = (4242, 4343) if sandbox_user.is_root else (sandbox_user.uid, sandbox_user.gid)
    assert host_owners(workspace) == {expected}


# The directory holding this checkout (/work for /work/main): where people mount projects.
CHECKOUT_PARENT = str(Path(__file__).resolve().parents[3])
RUNTIME_CHECK = f"""
import json, os, sys
import trio, trio_sandbox.tools
print(json.dumps({{
    "package": os.path.dirname(trio_sandbox.tools.__file__),
    "covered": sorted(os.listdir({CHECKOUT_PARENT!r})),
}}))
"""


async def test_the_runtime_is_never_hidden_by_a_volume(
    sandbox_user: SandboxUser, workspace: Path
) -> None:
    """A volume over the checkout's own directory (``--volume ./project:/work`` with the package
    under /work/main): the interpreter and the package are under /.trio-sandbox, which no
    volume can cover, and nothing is made inside the volume."""
    outcome = await probe(
        RUNTIME_CHECK, "--volume", f"{workspace}:{CHECKOUT_PARENT}", user=sandbox_user
    )
    assert isinstance(outcome, dict)
    assert outcome["package"].startswith("/.trio-sandbox/")
    assert outcome["covered"] == []
    assert os.listdir(workspace) == []


SITE_CHECK = """
import json, sys, sysconfig
print(json.dumps({"no_site": sys.flags.no_site, "base": sysconfig.get_paths()["purelib"],
                  "path": sys.path, "site": "site" in sys.modules}))
"""


async def test_the_runtime_interpreter_runs_no_site_configuration_of_the_host(
    sandbox_user: SandboxUser,
) -> None:
    """The runtime's packages come from PYTHONPATH: the interpreter runs with ``-S``, so the
    base installation's site-packages is not on its path and none of its ``.pth`` files (host
    configuration: code run at every start) runs in the sandbox."""
    outcome = await probe(SITE_CHECK, user=sandbox_user)
    assert isinstance(outcome, dict)
    assert outcome["no_site"] == 1
    assert outcome["site"] is False
    assert outcome["base"] not in outcome["path"]
    assert any(entry.startswith("/.trio-sandbox/site/") for entry in outcome["path"]) or any(
        "-packages" in entry for entry in outcome["path"]
    )


@pytest.mark.parametrize("target", ["/.trio-sandbox", "/.trio-sandbox/site", "/proc/x", "/dev"])
async def test_volumes_may_not_cover_the_runtime_or_kernel_interfaces(
    sandbox_user: SandboxUser, workspace: Path, target: str
) -> None:
    result = await wrap("--volume", f"{workspace}:{target}", command=["true"], user=sandbox_user)
    assert result.returncode == 2
    assert b"is reserved in the sandbox" in result.stderr
