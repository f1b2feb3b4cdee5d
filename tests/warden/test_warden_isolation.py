"""Escape attempts from inside the default (bubblewrap, `host` image) sandbox.

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
from warden_harness import (
    HANG_GUARD_SECONDS,
    PYTHON,
    WARDEN,
    host_path_exists,
    launcher_env,
    live_pids_with,
    probe,
    quote,
    read_host_file,
    start_host_sleep,
    unique_marker,
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


async def test_writes_outside_volumes_fail(tmp_path: Path) -> None:
    """Read-only root (`--remount-ro /`), read-only /usr and /etc, read-only python prefixes."""
    volume = trio.Path(tmp_path / "rw")
    await volume.mkdir()
    await volume.chmod(0o777)  # the sandbox runs as uid 65534
    targets = [
        "/escape",
        "/usr/escape",
        "/etc/escape",
        "/root/escape",
        "/work/escape",
        os.path.join(os.path.dirname(PYTHON), "escape"),
        "/tmp/inside-only",
        "/data/kept",
    ]
    result = await wrap(
        "--volume",
        f"{volume}:/data",
        command=[PYTHON, "-c", TRY_WRITE, *targets],
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


async def test_read_only_volume_is_read_only(tmp_path: Path) -> None:
    """`:ro` volumes are bound with --ro-bind."""
    await trio.Path(tmp_path / "file").write_text("original")
    # Writable for uid 65534 but for the `:ro`: only the read-only bind can stop the writes.
    await trio.Path(tmp_path / "file").chmod(0o666)
    await trio.Path(tmp_path).chmod(0o777)
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
        f"{tmp_path}:/ro:ro",
    )
    assert outcome == ["original", "Read-only file system", "Read-only file system"]
    assert await trio.Path(tmp_path / "file").read_text() == "original"


async def test_shadow_is_unreadable() -> None:
    """uid 65534 and the masking of files others may not read (/etc/shadow trap)."""
    assert read_host_file("/etc/shadow").startswith(b"root:")
    outcome = await probe(
        "import json\n"
        "out = {}\n"
        "for path in ('/etc/shadow', '/etc/gshadow'):\n"
        "    try:\n"
        "        out[path] = open(path).read()\n"
        "    except OSError as exc:\n"
        "        out[path] = 'error: ' + exc.strerror\n"
        "print(json.dumps(out))"
    )
    assert isinstance(outcome, dict)
    for path, text in outcome.items():
        assert "root:" not in text, path


async def test_proc_sys_is_read_only() -> None:
    """`--ro-bind /proc/sys /proc/sys` (and uid 65534): kernel settings cannot be changed."""
    before = read_host_file("/proc/sys/kernel/domainname")
    outcome = await probe(
        "import json\n"
        "out = {}\n"
        "for path in ('/proc/sys/kernel/domainname', '/proc/sys/vm/drop_caches'):\n"
        "    try:\n"
        "        with open(path, 'w') as f:\n"
        "            f.write('3' if 'drop' in path else 'escaped')\n"
        "        out[path] = 'written'\n"
        "    except OSError as exc:\n"
        "        out[path] = exc.strerror\n"
        "print(json.dumps(out))"
    )
    assert isinstance(outcome, dict)
    assert "written" not in outcome.values(), outcome
    assert read_host_file("/proc/sys/kernel/domainname") == before


async def test_host_processes_are_invisible() -> None:
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
                "print(json.dumps([len(pids), any(marker in line for line in lines)]))"
            )
        finally:
            host_process.kill()
    assert isinstance(outcome, list)
    process_count, marker_seen = outcome
    assert marker_seen is False
    assert process_count <= 3  # init, the python command, maybe a transient child


async def test_no_network_to_host_loopback_and_no_name_resolution() -> None:
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
            "print(json.dumps(out))"
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


async def test_ptrace_mount_and_unshare_fail() -> None:
    """The seccomp deny-list (ptrace, mount, unshare, clone with namespace flags)."""
    outcome = await probe(PRIVILEGED_CALLS)
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


async def test_launcher_environment_is_invisible_inside() -> None:
    """`--clearenv` for the command, and bwrap started with a scrubbed environment so its
    init (PID 1 inside) does not carry the launcher's variables either."""
    marker = unique_marker()
    env = launcher_env(LAUNCHER_SECRET="warden-launcher-secret")
    with trio.fail_after(HANG_GUARD_SECONDS):
        async with trio.open_nursery() as nursery:
            argv = [
                *WARDEN,
                *["--env", "PASSED_IN=visible", "host", "--"],
                *["sh", "-c", f"{PYTHON} -c '{ENV_SCAN}'; sleep {marker}"],
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
