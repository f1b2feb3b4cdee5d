"""Child processes of the conformance and proxy tests: started in their own process group,
stopped as a whole, and the URL they print on their first line read back."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Sequence
from pathlib import Path

import trio

from trio_sandbox.concurrency import stopping_process_group

# node spawns helpers, and Python children may too: stop the whole group, SIGKILL after 5 s.
stop_group = stopping_process_group(grace=5.0)


async def start_url_printing_child(
    nursery: trio.Nursery,
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[trio.Process, str]:
    """Start a child that prints its URL on its first stdout line; return it and the URL."""
    process: trio.Process = await nursery.start(
        functools.partial(
            trio.run_process,
            list(argv),
            stdout=subprocess.PIPE,
            start_new_session=True,
            check=False,
            env=env,
            cwd=cwd,
            deliver_cancel=stop_group,
        )
    )
    assert process.stdout is not None
    seen = b""
    with trio.fail_after(30):
        while b"\n" not in seen:
            chunk = await process.stdout.receive_some()
            assert chunk, f"{argv[0]} exited before printing its URL: {seen!r}"
            seen += chunk
    return process, seen.split(b"\n", 1)[0].decode().strip()
