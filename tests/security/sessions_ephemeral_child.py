"""A child process for the security tests: ``open_sandbox`` in ephemeral mode behind a plain-HTTP
face (loopback) whose session table holds two sessions; prints ``URL <url>``, serves until its
stdin ends. Run as root or as the ordinary user, with that user's interpreter."""

from __future__ import annotations

import os
import sys

import attrs
import trio

from trio_sandbox.mcp import HttpSettings
from trio_sandbox.proxy import HttpFace
from trio_sandbox.sandbox import SandboxConfig, SandboxMode, open_sandbox


async def main() -> None:
    defaults: HttpSettings = attrs.fields(HttpFace).settings.default  # type: ignore[assignment]
    face = HttpFace(plain=True, settings=attrs.evolve(defaults, max_sessions=2))
    # No warm spare: the test counts the sandboxes of sessions by their ports.
    config = SandboxConfig(mode=SandboxMode.EPHEMERAL, warm_spares=0)
    async with open_sandbox(config, face=face) as sandbox:
        print(f"URL {sandbox.proxy_url}", flush=True)
        async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
            while await stdin.receive_some():
                pass


if __name__ == "__main__":
    trio.run(main)
