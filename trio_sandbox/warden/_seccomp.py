"""The sandbox's seccomp rules: one table, built into a classic BPF program for
`bwrap --seccomp FD` and merged into the container engine's own profile for podman.

bubblewrap only needs the raw `struct sock_filter` array, so a few hundred instructions written
here avoid a dependency on libseccomp (python3-seccomp is a Debian-only binding, absent from
venvs). Denied calls fail with EPERM, so programs see an ordinary "not permitted"; `clone3` and
`openat2` fail with ENOSYS so that libc falls back to `clone` and `openat`, whose arguments can
be inspected (the newer calls pass them in memory that seccomp cannot read).

What the rules hold, beyond the deny-list:
- No setuid/setgid file: a mode argument carrying S_ISUID or S_ISGID is refused (EPERM) for the
  chmod family, mknod, creat, and open/openat when they create a file. Otherwise a uid-0 sandbox
  could leave a setuid-root executable in a root-owned workspace for any host user to run.
- Socket families are an allow-list (AF_UNIX, AF_INET, AF_INET6, and AF_NETLINK for the route and
  socket-diagnostics protocols only: getifaddrs, ip, ss); anything else fails EAFNOSUPPORT.
  AF_VSOCK in particular reaches the hypervisor's host side: no network namespace isolates it.
"""

from __future__ import annotations

import copy
import errno
import os
import socket
import stat
import struct
from dataclasses import dataclass
from typing import Any

from ..concurrency import memfd_holding
from ._errors import SeccompUnsupportedError

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
# Calls whose arguments live in memory: ENOSYS, so that libc falls back to the older call.
UNINSPECTABLE_SYSCALLS_X86_64: dict[str, int] = {"clone3": 435, "openat2": 437}
_CLONE_X86_64 = 56
_IOCTL_X86_64 = 16

# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID
# | CLONE_NEWNET: a new namespace is the first step of most container escapes.
CLONE_NAMESPACE_FLAGS = 0x7E020000
# Faking terminal input (TIOCSTI) or console control (TIOCLINUX) reaches outside the sandbox.
_DENIED_IOCTLS = (0x5412, 0x541C)

SETID_BITS = stat.S_ISUID | stat.S_ISGID
# open/openat use their mode only when creating: O_CREAT, or __O_TMPFILE (O_TMPFILE without
# O_DIRECTORY, which a plain directory open also carries).
CREATING_FLAGS = os.O_CREAT | 0o20000000


@dataclass(frozen=True, slots=True)
class ModeRule:
    """A call whose mode argument may carry S_ISUID/S_ISGID: refused when it does (and, with a
    flags argument, only when those flags create a file)."""

    name: str
    number: int
    mode_arg: int
    flags_arg: int | None = None


MODE_RULES_X86_64 = (
    ModeRule("open", 2, mode_arg=2, flags_arg=1),
    ModeRule("creat", 85, mode_arg=1),
    ModeRule("chmod", 90, mode_arg=1),
    ModeRule("fchmod", 91, mode_arg=1),
    ModeRule("mknod", 133, mode_arg=1),
    ModeRule("openat", 257, mode_arg=3, flags_arg=2),
    ModeRule("mknodat", 259, mode_arg=2),
    ModeRule("fchmodat", 268, mode_arg=2),
    ModeRule("fchmodat2", 452, mode_arg=2),
)

# socket(2) and socketpair(2): the family is argument 0, the protocol argument 2.
SOCKET_SYSCALLS_X86_64: dict[str, int] = {"socket": 41, "socketpair": 53}
ALLOWED_FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)
# AF_NETLINK with these protocols only: NETLINK_ROUTE (getifaddrs, ip) and NETLINK_SOCK_DIAG
# (ss). Others (uevents, audit, ...) hear or talk to the host's kernel beyond the namespace.
ALLOWED_NETLINK_PROTOCOLS = (0, 4)
# One past the highest address family and netlink protocol a kernel knows (AF_MAX is 46 in
# Linux 6.x, MAX_LINKS 32): the container profile refuses each one by name, with the errno the
# BPF program gives; values beyond get the engine's default errno (refused all the same).
FAMILIES_BOUND = 64
NETLINK_PROTOCOLS_BOUND = 32


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _ret(value: int) -> bytes:
    return _insn(_RET_K, 0, 0, value)


def _one_of(values: tuple[int, ...], matched: int, otherwise: int) -> list[bytes]:
    """With the accumulator loaded: return ``matched`` if it is one of ``values``."""
    program = [
        _insn(_JEQ_K, len(values) - position, 0, value) for position, value in enumerate(values)
    ]
    return [*program, _ret(otherwise), _ret(matched)]


def _when(number: int, body: list[bytes]) -> list[bytes]:
    """``body`` (which always returns) for syscall ``number``; skipped for any other."""
    return [_insn(_JEQ_K, 0, len(body), number), *body]


def _mode_body(rule: ModeRule, eperm: int) -> list[bytes]:
    refuse_setid = [
        _insn(_LD_W_ABS, 0, 0, _arg_low(rule.mode_arg)),
        _insn(_JSET_K, 0, 1, SETID_BITS),
        _ret(eperm),
        _ret(_RET_ALLOW),
    ]
    if rule.flags_arg is None:
        return refuse_setid
    return [
        _insn(_LD_W_ABS, 0, 0, _arg_low(rule.flags_arg)),
        # Not creating: the mode is ignored by the kernel; skip to the final allow.
        _insn(_JSET_K, 0, len(refuse_setid) - 1, CREATING_FLAGS),
        *refuse_setid,
    ]


def _socket_body() -> list[bytes]:
    families = _one_of(ALLOWED_FAMILIES, _RET_ALLOW, _RET_ERRNO | errno.EAFNOSUPPORT)
    netlink = [
        _insn(_LD_W_ABS, 0, 0, _arg_low(2)),
        *_one_of(ALLOWED_NETLINK_PROTOCOLS, _RET_ALLOW, _RET_ERRNO | errno.EPROTONOSUPPORT),
    ]
    return [
        _insn(_LD_W_ABS, 0, 0, _arg_low(0)),
        _insn(_JEQ_K, len(families), 0, socket.AF_NETLINK),
        *families,
        *netlink,
    ]


def deny_list_program(machine: str | None = None) -> bytes:
    """The filter as bytes of `struct sock_filter`, ready for `bwrap --seccomp FD`."""
    machine = machine or os.uname().machine
    if machine not in ("x86_64", "amd64", "AMD64"):
        raise SeccompUnsupportedError(f"no seccomp deny-list for architecture {machine!r}")
    eperm = _RET_ERRNO | errno.EPERM
    program = [
        _insn(_LD_W_ABS, 0, 0, _OFFSET_ARCH),
        _insn(_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64),
        _ret(_RET_KILL_PROCESS),  # i386 or x32 entry points: not ours
        _insn(_LD_W_ABS, 0, 0, _OFFSET_NR),
        _insn(_JGE_K, 0, 1, _X32_SYSCALL_BIT),
        _ret(eperm),
    ]
    for number in sorted(UNINSPECTABLE_SYSCALLS_X86_64.values()):
        program += _when(number, [_ret(_RET_ERRNO | errno.ENOSYS)])
    for number in sorted(DENIED_SYSCALLS_X86_64.values()):
        program += _when(number, [_ret(eperm)])
    # Each block below ends in a return; the accumulator is reloaded with nr before each test.
    reload_nr = _insn(_LD_W_ABS, 0, 0, _OFFSET_NR)
    for rule in MODE_RULES_X86_64:
        program += [reload_nr, *_when(rule.number, _mode_body(rule, eperm))]
    for number in SOCKET_SYSCALLS_X86_64.values():
        program += [reload_nr, *_when(number, _socket_body())]
    program += [
        reload_nr,
        # clone: deny only when it asks for a new namespace.
        *_when(
            _CLONE_X86_64,
            [
                _insn(_LD_W_ABS, 0, 0, _arg_low(0)),
                _insn(_JSET_K, 0, 1, CLONE_NAMESPACE_FLAGS),
                _ret(eperm),
                _ret(_RET_ALLOW),
            ],
        ),
        # ioctl: deny the terminal-injection requests.
        *_when(
            _IOCTL_X86_64,
            [_insn(_LD_W_ABS, 0, 0, _arg_low(1)), *_one_of(_DENIED_IOCTLS, eperm, _RET_ALLOW)],
        ),
        _ret(_RET_ALLOW),
    ]
    return b"".join(program)


def deny_list_fd() -> int:
    """A memfd holding the program, positioned at 0; the caller passes it on and closes it."""
    return memfd_holding("trio-sandbox-seccomp", deny_list_program())


# The container engines' profile format (OCI runtime spec, as podman reads it). libseccomp
# cannot refine an unconditional rule with a conditional one of another action (measured: an
# unconditional ALLOW for chmod wins over a conditional ERRNO), so each call this table filters
# is taken out of the engine's rules and given only conditional ones here.
def _masked(index: int, mask: int, value: int) -> dict[str, Any]:
    return {"index": index, "value": mask, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ"}


def _equal(index: int, value: int) -> dict[str, Any]:
    """The argument as the kernel takes an int: its low 32 bits (libseccomp compares 64)."""
    return _masked(index, 0xFFFFFFFF, value)


def _rule(name: str, args: list[dict[str, Any]], code: int | None = None) -> dict[str, Any]:
    if code is None:
        return {"names": [name], "action": "SCMP_ACT_ALLOW", "args": args}
    return {"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": code, "args": args}


def _container_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for name in DENIED_SYSCALLS_X86_64:
        rules.append(_rule(name, [], errno.EPERM))
    for name in UNINSPECTABLE_SYSCALLS_X86_64:
        rules.append(_rule(name, [], errno.ENOSYS))
    setid = (stat.S_ISUID, stat.S_ISGID)
    for mode_rule in MODE_RULES_X86_64:
        name, mode_arg = mode_rule.name, mode_rule.mode_arg
        rules.append(_rule(name, [_masked(mode_arg, SETID_BITS, 0)]))
        if mode_rule.flags_arg is None:
            rules += [_rule(name, [_masked(mode_arg, bit, bit)], errno.EPERM) for bit in setid]
            continue
        flags_arg = mode_rule.flags_arg
        rules.append(_rule(name, [_masked(flags_arg, CREATING_FLAGS, 0)]))
        creating = (os.O_CREAT, CREATING_FLAGS & ~os.O_CREAT)
        rules += [
            _rule(name, [_masked(flags_arg, flag, flag), _masked(mode_arg, bit, bit)], errno.EPERM)
            for flag in creating
            for bit in setid
        ]
    for name in SOCKET_SYSCALLS_X86_64:
        rules += [_rule(name, [_equal(0, family)]) for family in ALLOWED_FAMILIES]
        rules += [
            _rule(name, [_equal(0, socket.AF_NETLINK), _equal(2, protocol)])
            for protocol in ALLOWED_NETLINK_PROTOCOLS
        ]
        refused = set(range(FAMILIES_BOUND)) - {*ALLOWED_FAMILIES, socket.AF_NETLINK}
        rules += [
            _rule(name, [_equal(0, family)], errno.EAFNOSUPPORT) for family in sorted(refused)
        ]
        refused = set(range(NETLINK_PROTOCOLS_BOUND)) - set(ALLOWED_NETLINK_PROTOCOLS)
        rules += [
            _rule(
                name,
                [_equal(0, socket.AF_NETLINK), _equal(2, protocol)],
                errno.EPROTONOSUPPORT,
            )
            for protocol in sorted(refused)
        ]
    return rules


def container_profile(engine_default: dict[str, Any]) -> dict[str, Any]:
    """The engine's default profile (an allow-list) with this module's rules merged in, for
    x86_64 only (other entry points, i386 and x32, fall to the default action)."""
    if os.uname().machine not in ("x86_64", "amd64", "AMD64"):
        raise SeccompUnsupportedError(f"no seccomp rules for architecture {os.uname().machine!r}")
    ours = _container_rules()
    filtered = {name for rule in ours for name in rule["names"]}
    profile = copy.deepcopy(engine_default)
    profile.pop("archMap", None)
    profile["architectures"] = ["SCMP_ARCH_X86_64"]
    kept = []
    for entry in profile.get("syscalls", []):
        names = [name for name in entry.get("names", []) if name not in filtered]
        if names:
            kept.append({**entry, "names": names})
    profile["syscalls"] = kept + ours
    return profile
