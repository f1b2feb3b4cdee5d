"""The subcommands behind :func:`trio_sandbox.cli.main`, each in its own module."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ..observe import ObserveError
from ..sandbox import SandboxFailed, SandboxStartError
from . import _auth_command, _call, _proxy_command, _run, _status, _stdio_command
from ._errors import UsageError

# Each subcommand lives in its own module and registers its parser and handler.
_SUBCOMMANDS = (_run, _stdio_command, _call, _status, _proxy_command, _auth_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-sandbox",
        description="Run MCP tools in a sandbox behind a mutual-TLS proxy.",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("TRIO_SANDBOX_LOG", "WARNING"),
        help="log level for stderr (default WARNING, or $TRIO_SANDBOX_LOG)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _SUBCOMMANDS:
        module.register(commands)
    return parser


def run_cli(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=str(args.log_level).upper(),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        status: int = args.handler(args)
    except (UsageError, ObserveError) as exc:
        parser.exit(2, f"trio-sandbox: error: {exc}\n")
    except (SandboxStartError, SandboxFailed) as exc:
        # Said in the user's terms (step, warden status, its stderr): a traceback adds nothing.
        parser.exit(1, f"trio-sandbox: error: {exc}\n")
    return status
