"""A classic-BPF interpreter for the few instructions a seccomp filter of ours uses, and an
evaluator of a container engine's seccomp profile (libseccomp's rule semantics), so that tests
can run both on sample `struct seccomp_data` values."""

from __future__ import annotations

import struct
from typing import Any

import attrs

AUDIT_ARCH_X86_64 = 0xC000003E
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
RET_KILL_PROCESS = 0x80000000


@attrs.frozen
class Call:
    """One system call as seccomp sees it."""

    nr: int
    args: tuple[int, ...] = ()
    arch: int = AUDIT_ARCH_X86_64

    def data(self) -> bytes:
        """``struct seccomp_data``: nr, arch, instruction pointer, six 64-bit arguments."""
        args = (*self.args, *(0,) * (6 - len(self.args)))
        return struct.pack("=iIQ6Q", self.nr, self.arch, 0, *args)


def run_filter(program: bytes, call: Call) -> int:
    """The filter's return value for ``call``; any opcode it does not know is an error."""
    instructions: list[tuple[int, int, int, int]] = [
        struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)
    ]
    data = call.data()
    accumulator = 0
    pc = 0
    while True:
        code, jt, jf, k = instructions[pc]
        pc += 1
        if code == 0x20:  # BPF_LD | BPF_W | BPF_ABS
            accumulator = int.from_bytes(data[k : k + 4], "little")
        elif code == 0x06:  # BPF_RET | BPF_K
            return k
        elif code in (0x15, 0x35, 0x45):  # BPF_JMP | BPF_JEQ / BPF_JGE / BPF_JSET, BPF_K
            taken = {
                0x15: accumulator == k,
                0x35: accumulator >= k,
                0x45: accumulator & k != 0,
            }[code]
            pc += jt if taken else jf
        else:
            raise AssertionError(f"unexpected opcode {code:#x} at {pc - 1}")


def errno_of(value: int) -> int | None:
    """The errno of a SECCOMP_RET_ERRNO value; None for an allow."""
    if value == RET_ALLOW:
        return None
    assert value & 0xFFFF0000 == RET_ERRNO, hex(value)
    return value & 0xFFFF


def _holds(comparison: dict[str, Any], args: tuple[int, ...]) -> bool:
    value = args[comparison["index"]] if comparison["index"] < len(args) else 0
    op = comparison["op"]
    if op == "SCMP_CMP_MASKED_EQ":
        return bool(value & comparison["value"] == comparison["valueTwo"])
    if op == "SCMP_CMP_EQ":
        return bool(value == comparison["value"])
    if op == "SCMP_CMP_NE":
        return bool(value != comparison["value"])
    raise AssertionError(f"unexpected comparison {op}")


def profile_errno(profile: dict[str, Any], name: str, args: tuple[int, ...]) -> int | None:
    """What a profile answers for ``name(args)``: None (allowed) or an errno. Allowing and
    refusing rules that both match would be ambiguous in libseccomp: asserted never to happen."""
    allowed = False
    refused: set[int] = set()
    for entry in profile["syscalls"]:
        if name not in entry["names"] or entry.get("includes") or entry.get("excludes"):
            continue
        if all(_holds(comparison, args) for comparison in entry.get("args") or []):
            if entry["action"] == "SCMP_ACT_ALLOW":
                allowed = True
            else:
                refused.add(entry["errnoRet"])
    assert not (allowed and refused), (name, args, refused)
    assert len(refused) <= 1, (name, args, refused)
    if allowed:
        return None
    return refused.pop() if refused else int(profile["defaultErrnoRet"])
