"""The hops of one embedded ``Sandbox.call_tool``, host side, counted with ``sys.setprofile``
over one warm call on a real sandbox (bubblewrap, the real tool server).

The call's path is read where it is handed on or changes form: each time the host wakes another
task (Trio's ``reschedule``: a memory channel's send, an Event set), writes to a socket
(``send_all``), or encodes or parses JSON, the trio_sandbox functions on the stack at that moment
are the ones carrying the call. Their chains, task by task, are the path. A hop (marked ``*``) is
a hand-off along it to another object (a class, or a module for its functions) or to another
task; calls within one object are not hops. It also counts the host's JSON text encodings and
parsings (``json.dumps`` / ``json.loads``) and its JSON-RPC message encodings and decodings
(``encode_message`` / ``decode_message``) for that one call.

Uses only the public embedding API, so it runs unchanged on any revision:

    .venv/bin/python benchmarks/call_hops.py
"""

from __future__ import annotations

import argparse
import dis
import functools
import os
import sys
import types
from collections import Counter
from typing import Any

import trio

import trio_sandbox
from trio_sandbox.sandbox import SandboxConfig, open_sandbox

PACKAGE = os.path.dirname(trio_sandbox.__file__) + os.sep
TRIO = os.path.dirname(trio.__file__) + os.sep
HAND_OFFS = {"reschedule", "send_all"}
JSON_TEXT = {"dumps", "loads"}
JSON_RPC = {"encode_message", "decode_message"}


@functools.cache
def first_resume(code: types.CodeType) -> int:
    """Where a fresh frame of ``code`` starts (a resumed coroutine is further on)."""
    return next(i.offset for i in dis.get_instructions(code) if i.opname == "RESUME")


def module_of(code: types.CodeType) -> str | None:
    """``proxy._upstream`` for a function of trio_sandbox, else None."""
    if not code.co_filename.startswith(PACKAGE):
        return None
    return code.co_filename[len(PACKAGE) : -len(".py")].replace(os.sep, ".")


def owner(code: types.CodeType) -> str:
    """The object a function belongs to: its class (by the house's naming, a capitalised first
    name), else its module (module functions, and the functions nested in them)."""
    first = code.co_qualname.split(".")[0]
    return f"{module_of(code)}.{first}" if first[:1].isupper() else f"{module_of(code)}"


def name(code: types.CodeType) -> str:
    return f"{module_of(code)}.{code.co_qualname}"


class Recorder:
    def __init__(self) -> None:
        # Per task, in the order tasks first carried the call: the chains seen at its points.
        self.tasks: dict[object, list[list[types.CodeType]]] = {}
        self.json: Counter[str] = Counter()

    def profile(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        fresh = frame.f_lasti == first_resume(code)
        if fresh and code.co_filename.endswith(f"{os.sep}json{os.sep}__init__.py"):
            if code.co_name in JSON_TEXT:
                self.json[f"json.{code.co_name}"] += 1
                self.record(frame.f_back)
        elif fresh and code.co_name in JSON_RPC and module_of(code) is not None:
            self.json[code.co_name] += 1
            self.record(frame)
        elif code.co_name in HAND_OFFS and code.co_filename.startswith(TRIO):
            self.record(frame.f_back)

    def record(self, frame: types.FrameType | None) -> None:
        """The trio_sandbox functions on the stack from ``frame`` out, outermost first."""
        chain = []
        while frame is not None:
            if module_of(frame.f_code) is not None:
                chain.append(frame.f_code)
            frame = frame.f_back
        if chain:  # not the scheduler's own wake-ups (I/O readiness)
            task = trio.lowlevel.current_task()
            self.tasks.setdefault(task, []).append(chain[::-1])


def task_path(chains: list[list[types.CodeType]]) -> list[types.CodeType]:
    """One task's functions on the call's path, in the order they were first on it."""
    seen: list[types.CodeType] = []
    for chain in chains:
        seen += [code for code in chain if code not in seen]
    return seen


async def measure() -> Recorder:
    config = SandboxConfig(health_interval=3600.0)
    async with open_sandbox(config) as sandbox:
        for _ in range(3):  # warm: the listing, the redactor, the sessions
            await sandbox.call_tool("get_all_tasks", {})
        recorder = Recorder()
        sys.setprofile(recorder.profile)
        try:
            await sandbox.call_tool("get_all_tasks", {})
        finally:
            sys.setprofile(None)
    return recorder


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    recorder = trio.run(measure)
    hops = 0
    for number, chains in enumerate(recorder.tasks.values(), 1):
        print(f"task {number}:")
        previous: str | None = None
        for code in task_path(chains):
            mark = " "
            if owner(code) != previous:
                hops += 1
                mark = "*"
            previous = owner(code)
            print(f"  {mark} {name(code)}")
    print(f"hops (* above: a hand-off to another object, or to another task): {hops}")
    print(f"json: {dict(sorted(recorder.json.items()))}")


if __name__ == "__main__":
    main()
