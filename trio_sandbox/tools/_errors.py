"""The tool server's errors: its own command line refused, a shell that could not start (told to
the agent as the tool's result), and a server that can start no process any more (it exits so
that the sandbox is replaced).
"""

from __future__ import annotations

from ..contract import SandboxError


class SpawnError(SandboxError):
    """The shell could not be started; the message says why, naming the limit that was hit."""


class ToolServerWedged(SandboxError):
    """The tool server cannot start processes even with nothing of the commands' left running."""


class ToolServerOptionsError(SandboxError):
    """A bad option or variable of the tool server's own command line (``python -m
    trio_sandbox.tools``); it prints the message and exits with status 2."""
