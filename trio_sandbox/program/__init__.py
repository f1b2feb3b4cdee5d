"""The package as a program: its version, names its packages load on first use (PEP 562), and
leaving a process that has cleaned up without the interpreter's teardown, and where it keeps
per-user state.

An independent root of the package, standard library only: the CLI, the warden and the tool
server take these before they import Trio.
"""

from __future__ import annotations

from ._exit import exit_now as exit_now
from ._lazy import lazy_exports as lazy_exports
from ._state import state_dir as state_dir
from ._version import VERSION as VERSION
