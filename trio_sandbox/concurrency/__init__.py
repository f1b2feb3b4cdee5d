"""Small Trio helpers every layer shares: one error policy for exception groups, and one way to
stop a child's process group.

This package is an independent root: it imports nothing else of trio_sandbox.
"""

from ._groups import collapse_exception_group as collapse_exception_group
from ._groups import exception_leaves as exception_leaves
from ._groups import single_error as single_error
from ._process_group import signal_process_group as signal_process_group
from ._process_group import stop_process_group as stop_process_group
from ._process_group import stopping_process_group as stopping_process_group
