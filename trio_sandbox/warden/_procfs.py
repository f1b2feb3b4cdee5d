"""What the sandbox's /proc hides beyond the usual list: the kernel's root-only files."""

from __future__ import annotations

import contextlib
import os
import stat


def root_only_proc_files() -> list[str]:
    """/proc's own files that others may not read (slabinfo, vmallocinfo, pagetypeinfo, ...):
    /proc cannot be id-mapped, so a uid-0 sandbox would read them as their owner. (/proc/sys,
    bound read-only, is not scanned: its walk costs 20 ms a launch, for a few sysctls.)"""
    found = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISREG(mode) and not mode & 0o004:
                    found.append(entry.path)
    return sorted(found)
