"""A seccomp deny-list as a classic BPF program, built in pure Python for `bwrap --seccomp FD`.

bubblewrap only needs the raw `struct sock_filter` array, so a few dozen instructions written
here avoid a dependency on libseccomp (python3-seccomp is a Debian-only binding, absent from
venvs). Denied calls fail with EPERM, so programs see an ordinary "not permitted"; `clone3`
fails with ENOSYS so that libc falls back to `clone`, whose namespace flags can be inspected
(clone3 passes them in memory that seccomp cannot read).
"""

from __future__ import annotations

import errno
import os
import platform
import struct

# BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000

# Offsets in struct seccomp_data: nr, arch, then args[] as 64-bit values (low half first).
_OFFSET_NR = 0
_OFFSET_ARCH = 4


def _arg_low(index: int) -> int:
    return 16 + 8 * index


# x86_64 numbers (arch/x86/entry/syscalls/syscall_64.tbl) of calls a tool never needs and
# that widen the kernel attack surface or escape the sandbox.
DENIED_SYSCALLS_X86_64: dict[str, int] = {
    "ptrace": 101,
    "syslog": 103,
    "uselib": 134,
    "vhangup": 153,
    "pivot_root": 155,
    "adjtimex": 159,
    "chroot": 161,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "sethostname": 170,
    "setdomainname": 171,
    "iopl": 172,
    "ioperm": 173,
    "init_module": 175,
    "delete_module": 176,
    "quotactl": 179,
    "lookup_dcookie": 212,
    "clock_settime": 227,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "move_pages": 279,
    "perf_event_open": 298,
    "fanotify_init": 300,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "clock_adjtime": 305,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "pidfd_getfd": 438,
    "mount_setattr": 442,
    "quotactl_fd": 443,
}
_CLONE_X86_64 = 56
_CLONE3_X86_64 = 435
_IOCTL_X86_64 = 16

# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID
# | CLONE_NEWNET: a new namespace is the first step of most container escapes.
CLONE_NAMESPACE_FLAGS = 0x7E020000
# Faking terminal input (TIOCSTI) or console control (TIOCLINUX) reaches outside the sandbox.
_DENIED_IOCTLS = (0x5412, 0x541C)


class SeccompUnsupportedError(RuntimeError):
    """No deny-list for this CPU architecture: refuse rather than run unfiltered."""


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def deny_list_program(machine: str | None = None) -> bytes:
    """The filter as bytes of `struct sock_filter`, ready for `bwrap --seccomp FD`."""
    machine = machine or platform.machine()
    if machine not in ("x86_64", "amd64", "AMD64"):
        raise SeccompUnsupportedError(f"no seccomp deny-list for architecture {machine!r}")
    eperm = _RET_ERRNO | errno.EPERM
    program = [
        _insn(_LD_W_ABS, 0, 0, _OFFSET_ARCH),
        _insn(_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64),
        _insn(_RET_K, 0, 0, _RET_KILL_PROCESS),  # i386 or x32 entry points: not ours
        _insn(_LD_W_ABS, 0, 0, _OFFSET_NR),
        _insn(_JGE_K, 0, 1, _X32_SYSCALL_BIT),
        _insn(_RET_K, 0, 0, eperm),
        _insn(_JEQ_K, 0, 1, _CLONE3_X86_64),
        _insn(_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS),
    ]
    for number in sorted(DENIED_SYSCALLS_X86_64.values()):
        program += [_insn(_JEQ_K, 0, 1, number), _insn(_RET_K, 0, 0, eperm)]
    program += [
        # clone: deny only when it asks for a new namespace.
        _insn(_JEQ_K, 0, 4, _CLONE_X86_64),
        _insn(_LD_W_ABS, 0, 0, _arg_low(0)),
        _insn(_JSET_K, 0, 1, CLONE_NAMESPACE_FLAGS),
        _insn(_RET_K, 0, 0, eperm),
        _insn(_RET_K, 0, 0, _RET_ALLOW),
        # ioctl: deny the terminal-injection requests.
        _insn(_JEQ_K, 0, 3 + len(_DENIED_IOCTLS), _IOCTL_X86_64),
        _insn(_LD_W_ABS, 0, 0, _arg_low(1)),
    ]
    for position, request in enumerate(_DENIED_IOCTLS):
        remaining = len(_DENIED_IOCTLS) - position - 1
        program.append(_insn(_JEQ_K, remaining + 1, 0, request))
    program += [
        _insn(_RET_K, 0, 0, _RET_ALLOW),
        _insn(_RET_K, 0, 0, eperm),
        _insn(_RET_K, 0, 0, _RET_ALLOW),
    ]
    return b"".join(program)


def deny_list_fd() -> int:
    """A memfd holding the program, positioned at 0; the caller passes it on and closes it."""
    fd = os.memfd_create("trio-sandbox-seccomp", 0)
    try:
        os.write(fd, deny_list_program())
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
