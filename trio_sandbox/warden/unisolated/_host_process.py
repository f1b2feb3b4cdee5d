"""The command as a plain process of this host (``--backend process``). NOTHING is isolated;
development only."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import sys

import trio

from ...concurrency import stop_process_group
from .._children import Child, run_child
from .._ports import bind_published_port
from .._publish import connect_on_host, serve_relays
from .._spec import WrapSpec
from .._stopping import StopGrace

WARNING = (
    "trio-sandbox-warden: WARNING: --backend process runs the command directly on this host.\n"
    "trio-sandbox-warden: WARNING: NOTHING IS ISOLATED: no file, network or process protection.\n"
    "trio-sandbox-warden: WARNING: use it for development only.\n"
)


async def _interrupt_then_kill(child: Child, grace: StopGrace) -> None:
    await stop_process_group(child, grace=grace.seconds, first_signal=signal.SIGINT)


async def run_unisolated(spec: WrapSpec, grace: StopGrace) -> int:
    sys.stderr.write(WARNING)
    sys.stderr.flush()
    if spec.volumes:
        print(
            "trio-sandbox-warden: note: volumes are ignored by --backend process"
            " (the command sees the host's paths)",
            file=sys.stderr,
            flush=True,
        )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    env.update(spec.env)
    argv = list(spec.command)
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        # Dies with the warden, even after SIGKILL (the command's own children may not).
        argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
    sockets = [bind_published_port(port) for port in spec.ports]
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                functools.partial(
                    serve_relays, spec.ports, sockets, connect_on_host, host_network=True
                )
            )
            status = await run_child(
                argv,
                env=env,
                stop=functools.partial(_interrupt_then_kill, grace=grace),
                cwd=spec.workdir,
            )
            nursery.cancel_scope.cancel()
        return status
    finally:
        for sock in sockets:
            sock.close()
