"""``trio-sandbox stdio``: MCP on stdin/stdout for hosts that launch servers themselves.

stdout carries nothing but MCP messages; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

from ..mcp import serve_stdio
from ..sandbox import SandboxConfig, open_sandbox
from ._options import (
    add_sandbox_options,
    refuse_audit_on_stdout,
    run_observed,
    sandbox_config,
)
from ._run import report_stages
from ._signals import stop_on_signals


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("stdio", help="serve the sandbox's tools on stdin/stdout")
    add_sandbox_options(parser, spares=True)
    parser.set_defaults(handler=stdio_command)


def stdio_command(args: argparse.Namespace) -> int:
    config, _listen = sandbox_config(args)
    refuse_audit_on_stdout(config.observe_settings, "stdio")
    report_stages()
    run_observed(config.observe_settings, stop_on_signals, partial(_serve, config))
    return 0


async def _serve(config: SandboxConfig) -> None:
    async with open_sandbox(config) as sandbox:
        print(f"trio-sandbox: serving {len(sandbox.tools)} tools on stdio", file=sys.stderr)
        assert sandbox.proxy is not None
        await serve_stdio(sandbox.proxy.server.mcp)
