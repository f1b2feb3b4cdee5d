"""``python -m trio_sandbox``: the command line for people and MCP hosts.

``main`` records SIGINT and SIGTERM before it imports anything heavy, so that a signal that
arrives while the command is still loading stops it cleanly (exit 0) instead of as a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..concurrency import record_early_signals


def main(argv: Sequence[str] | None = None) -> int:
    """The console entry point: record early signals, then :func:`run_cli`."""
    record_early_signals()
    return run_cli(argv)


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand, without touching the process's signal handlers."""
    from ._main import run_cli as run

    return run(argv)


__all__ = ["main", "run_cli"]
