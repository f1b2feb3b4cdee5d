"""Attacks run inside a sandbox, as Python source for the sandbox's interpreter: each tries
every route it names and prints one JSON object, route -> "ok" or the errno it failed with."""

from __future__ import annotations

# Every way to leave a setuid/setgid (or file-capability) executable behind in the workspace
# (the directory in $WS). PLANTED names a setuid file put there by the host; /usr/bin/su is the
# host's own setuid-root binary.
SETID_ROUTES = r"""
import ctypes, json, os, shutil, socket, stat, subprocess
ws = os.environ["WS"]
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
results = {}

def attempt(name, action):
    try:
        action()
        results[name] = "ok"
    except OSError as error:
        results[name] = error.errno

def syscall(number, *args):
    values = [ctypes.c_long(a) if isinstance(a, int) else ctypes.c_char_p(a) for a in args]
    result = libc.syscall(number, *values)
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return result

def path(name):
    return f"{ws}/{name}"

def fresh(name):
    with open(path(name), "w") as handle:
        handle.write("#!/bin/sh\nid\n")
    return path(name)

def run(name, argv):
    done = subprocess.run(argv, capture_output=True)
    results[name] = "ok" if done.returncode == 0 else done.stderr.decode()[-200:] or "failed"

AT_FDCWD = -100
attempt("os.chmod 4755", lambda: os.chmod(fresh("a"), 0o4755))
attempt("os.chmod 2755", lambda: os.chmod(fresh("b"), 0o2755))
attempt("os.chmod 6755", lambda: os.chmod(fresh("c"), 0o6755))
def fchmod():
    fd = os.open(fresh("d"), os.O_RDONLY)
    try:
        os.fchmod(fd, 0o4755)
    finally:
        os.close(fd)
attempt("os.fchmod 4755", fchmod)
attempt("chmod(2) 4755", lambda: syscall(90, fresh("e").encode(), 0o4755))
attempt("fchmodat(2) 2755", lambda: syscall(268, AT_FDCWD, fresh("f").encode(), 0o2755))
attempt("fchmodat2(2) 4755", lambda: syscall(452, AT_FDCWD, fresh("g").encode(), 0o4755, 0))
CREATE = os.O_CREAT | os.O_WRONLY
attempt("os.open O_CREAT 4755", lambda: os.close(os.open(path("h"), CREATE, 0o4755)))
attempt("open(2) O_CREAT 2755", lambda: syscall(2, path("i").encode(), CREATE, 0o2755))
attempt("openat(2) O_CREAT 4755", lambda: syscall(257, -100, path("j").encode(), CREATE, 0o4755))
attempt("creat(2) 4755", lambda: syscall(85, path("k").encode(), 0o4755))
attempt("O_TMPFILE 4755", lambda: os.close(os.open(ws, os.O_TMPFILE | os.O_WRONLY, 0o4755)))
attempt("os.mknod 4755", lambda: os.mknod(path("l"), stat.S_IFREG | 0o4755))
attempt("mknodat(2) 2755", lambda: syscall(259, AT_FDCWD, path("m").encode(), 0o102755, 0))
attempt("shutil.copymode", lambda: shutil.copymode(os.environ["PLANTED"], fresh("n")))
attempt("shutil.copy2", lambda: shutil.copy2(os.environ["PLANTED"], path("o")))
attempt("mkdir + chmod g+s", lambda: (os.mkdir(path("dir")), os.chmod(path("dir"), 0o2775)))
# A file capability (v2: CAP_SETUID effective+permitted) is another way to grant privilege.
CAPABILITY = "security.capability"
capability = bytes.fromhex("01000002" "80000000" "80000000" "00000000" "00000000")
attempt("setxattr security.capability", lambda: os.setxattr(fresh("p"), CAPABILITY, capability))
attempt("openat2(2)", lambda: syscall(437, AT_FDCWD, path("q").encode(), 0, 0))
run("chmod u+s", ["sh", "-c", f"echo x > {path('r')} && chmod u+s {path('r')}"])
run("chmod g+s", ["sh", "-c", f"echo x > {path('s')} && chmod g+s {path('s')}"])
run("install -m 4755", ["install", "-m", "4755", "/bin/true", path("t")])
run("install -m 2755", ["install", "-m", "2755", "/bin/true", path("u")])
run("cp -p planted", ["cp", "-p", os.environ["PLANTED"], path("v")])
run("cp -p /usr/bin/su", ["cp", "-p", "/usr/bin/su", path("w")])
run("cp -a /usr/bin/su", ["cp", "-a", "/usr/bin/su", path("x")])
tar = "tar -cf archive.tar planted && mkdir out && tar -xpf archive.tar -C out"
run("tar -xp", ["sh", "-c", f"cd {ws} && {tar}"])
if shutil.which("rsync"):
    run("rsync -p", ["rsync", "-p", os.environ["PLANTED"], path("y")])
# Writing into an existing set-id file clears its bits (no CAP_FSETID): nothing to reuse.
def overwrite():
    with open(os.environ["PLANTED"], "r+b") as handle:
        handle.write(b"#!/bin/sh\necho replaced\n")
attempt("overwrite the planted file (allowed, bits cleared)", overwrite)
# What still works: an ordinary mode, and a directory's sticky bit.
attempt("os.chmod 755 (allowed)", lambda: os.chmod(fresh("z"), 0o755))
attempt("os.open O_CREAT 644 (allowed)", lambda: os.close(os.open(path("z2"), CREATE, 0o644)))
attempt("chmod +t dir (allowed)", lambda: (os.mkdir(path("t1")), os.chmod(path("t1"), 0o1777)))
print(json.dumps(results))
"""

# Socket families the sandbox may not open, and the ones it needs.
SOCKET_FAMILIES = r"""
import ctypes, json, socket
libc = ctypes.CDLL(None, use_errno=True)
results = {}

def attempt(name, family, kind, protocol=0, pair=False):
    if pair:
        fds = (ctypes.c_int * 2)()
        status = libc.socketpair(ctypes.c_long(family), kind, protocol, fds)
        if status == 0:
            libc.close(fds[0]); libc.close(fds[1])
    else:
        args = [ctypes.c_long(value) for value in (41, family, kind, protocol)]
        status = libc.syscall(*args)
        if status >= 0:
            libc.close(status)
    results[name] = "ok" if status >= 0 else ctypes.get_errno()

STREAM, DGRAM, RAW, SEQPACKET = 1, 2, 3, 5
attempt("AF_VSOCK stream", 40, STREAM)
attempt("AF_VSOCK dgram", 40, DGRAM)
attempt("AF_VSOCK seqpacket", 40, SEQPACKET)
attempt("AF_VSOCK with high bits", 40 | (1 << 32), STREAM)
attempt("socketpair AF_VSOCK", 40, STREAM, pair=True)
attempt("AF_PACKET", 17, RAW)
attempt("AF_ALG", 38, SEQPACKET)
attempt("AF_BLUETOOTH", 31, RAW)
attempt("AF_CAN", 29, RAW, 1)
attempt("AF_KEY", 15, RAW, 2)
attempt("AF_TIPC", 30, RAW)
attempt("AF_RDS", 21, SEQPACKET)
attempt("AF_XDP", 44, RAW)
attempt("AF_NETLINK uevent", 16, RAW, 15)
attempt("AF_NETLINK audit", 16, RAW, 9)
attempt("AF_NETLINK netfilter", 16, RAW, 12)
attempt("AF_UNIX (allowed)", 1, STREAM)
attempt("socketpair AF_UNIX (allowed)", 1, STREAM, pair=True)
attempt("AF_INET (allowed)", 2, STREAM)
attempt("AF_INET6 (allowed)", 10, DGRAM)
attempt("AF_NETLINK route (allowed)", 16, RAW, 0)
attempt("AF_NETLINK sock_diag (allowed)", 16, RAW, 4)
results["if_nameindex (allowed)"] = [name for _, name in socket.if_nameindex()]
import shutil, subprocess
for tool in (["ip", "-o", "link", "show"], ["ss", "-tln"]):
    if shutil.which(tool[0]) is None:
        continue  # not in this image
    done = subprocess.run(tool, capture_output=True)
    results[f"{tool[0]} (allowed)"] = "ok" if done.returncode == 0 else done.stderr.decode()
print(json.dumps(results))
"""

# Fill every in-memory file system the sandbox might write, 1 MiB at a time, until refused;
# list the mounts that are writable at all. argv: the directories to fill.
FILL_MEMORY_FILE_SYSTEMS = r"""
import errno, json, os, sys
results = {}
chunk = b"x" * (1 << 20)
for directory in sys.argv[1:]:
    written = 0
    try:
        try:
            os.chmod(directory, 0o777)  # the owner of a masking tmpfs would do this first
        except OSError:
            pass
        with open(os.path.join(directory, "fill"), "wb", buffering=0) as out:
            while written < (1 << 30):
                written += out.write(chunk)
        results[directory] = ["unbounded", written]
    except OSError as error:
        results[directory] = [errno.errorcode[error.errno], written]
writable = []
for line in open("/proc/self/mountinfo"):
    fields = line.split()
    if "rw" in fields[5].split(","):
        writable.append(fields[4])
results["writable mounts"] = writable
print(json.dumps(results))
"""

# POSIX shared memory and semaphores, which live in /dev/shm.
SHARED_MEMORY = r"""
import json, multiprocessing, multiprocessing.shared_memory
block = multiprocessing.shared_memory.SharedMemory(create=True, size=1 << 20)
block.buf[:5] = b"hello"
again = multiprocessing.shared_memory.SharedMemory(name=block.name)
lock = multiprocessing.Lock()
with lock:
    seen = bytes(again.buf[:5]).decode()
again.close()
block.close()
block.unlink()
print(json.dumps({"shared memory": seen}))
"""

# Read each file named in argv; print what was read or the error.
READ_FILES = r"""
import json, sys
results = {}
for path in sys.argv[1:]:
    try:
        with open(path) as handle:
            results[path] = handle.read()
    except OSError as error:
        results[path] = error.strerror
print(json.dumps(results))
"""

# Other ways out: argv[1] names an abstract unix socket the host listens on, and $WS holds a
# device node the host made (/dev/null's numbers).
OTHER_WAYS_OUT = r"""
import ctypes, errno, fcntl, json, os, socket, sys, termios
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
results = {}

def attempt(name, action):
    try:
        action()
        results[name] = "ok"
    except OSError as error:
        results[name] = errno.errorcode.get(error.errno, error.errno)

def syscall(number, *args):
    if libc.syscall(number, *[ctypes.c_long(a) for a in args]) < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))

def connect_abstract():
    with socket.socket(socket.AF_UNIX) as client:
        client.connect("\0" + sys.argv[1])

attempt("connect to the host's abstract socket", connect_abstract)
def inject():
    leader, follower = os.openpty()
    try:
        fcntl.ioctl(follower, termios.TIOCSTI, b"x")
    finally:
        os.close(leader)
        os.close(follower)
attempt("TIOCSTI on a pty", inject)
attempt("open /dev/tty", lambda: os.close(os.open("/dev/tty", os.O_RDWR)))
attempt("add_key", lambda: syscall(248, 0, 0, 0, 0, 0))
attempt("keyctl join session keyring", lambda: syscall(250, 1, 0))
ws = os.environ["WS"]
attempt("mknod a character device", lambda: os.mknod(ws + "/mem", 0o20600, os.makedev(1, 1)))
attempt("open a device node in a volume", lambda: os.close(os.open(ws + "/null", os.O_RDWR)))
attempt("hard link to a host binary", lambda: os.link("/usr/bin/su", ws + "/su"))
attempt("ptrace", lambda: syscall(101, 16, 1, 0, 0))
attempt("userfaultfd", lambda: syscall(323, 0))
attempt("io_uring_setup", lambda: syscall(425, 1, 0))
attempt("perf_event_open", lambda: syscall(298, 0, 0, -1, -1, 0))
attempt("list /sys", lambda: os.listdir("/sys/kernel"))
targets = {}
for name in os.listdir("/proc/self/fd"):  # the listing's own descriptor is gone once read
    try:
        targets[name] = os.readlink(f"/proc/self/fd/{name}")
    except FileNotFoundError:
        pass
results["inherited descriptors"] = sorted(int(name) for name in targets if int(name) > 2)
results["descriptor targets"] = targets
results["ordinary socket (allowed)"] = socket.socket().family.name
print(json.dumps(results))
"""
