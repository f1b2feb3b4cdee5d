"""The bounds every tool works within: what one call may cost the sandbox or the caller."""

from __future__ import annotations

import attrs

from ..contract import LimitsInForce
from ._sandbox_limits import NO_LIMITS_SAID


@attrs.frozen
class ToolLimits:
    """Caps and grace periods of the tool server; every field is a tuning knob, not a contract."""

    # run_command returns at most this many bytes of (merged stdout+stderr) output, the tail:
    # errors and summaries come last. The proxy shows the model a short tail of anything over
    # 300 lines or 64 KiB and keeps the whole for resources/read, so this bounds memory, not
    # context.
    command_output_bytes: int = 1_048_576
    # A background task keeps the tail of its output in memory, for get_task_details.
    task_output_bytes: int = 1_000_000
    # Seconds a run_command may take when the caller gives no timeout: a command that never
    # ends must not hold the call (and the caller) forever. Long jobs belong in run_command_task.
    default_command_timeout: float | None = 600.0
    # The largest timeout a caller may ask for (one day), enforced by the input schemas.
    max_command_timeout: float = 86_400.0
    # The largest command (its script, UTF-8): it reaches the shell through a memfd, so only
    # this bound applies, not the kernel's 128 KiB per argument. Well below the transports'
    # 4 MiB per message (mcp.HttpSettings.max_body_bytes), so that the refusal is a tool error.
    max_command_bytes: int = 1_048_576
    # Between SIGTERM and SIGKILL of a command's processes: enough for a clean shutdown, short
    # enough that a cancelled call answers promptly.
    kill_grace: float = 2.0
    # After the shell exits, keep reading output this long: its background children may hold the
    # pipe open forever, and their output is not the command's result.
    output_drain: float = 0.25
    max_running_tasks: int = 32
    # Finished tasks kept for get_task_details/get_all_tasks; the oldest are forgotten first.
    max_kept_tasks: int = 200
    # view: lines shown per call, characters per line, and the largest file read at all.
    view_max_lines: int = 2_000
    view_max_line_chars: int = 2_000
    max_file_bytes: int = 10_000_000
    # Directory listings, trees and globs stop after this many entries.
    listing_max_entries: int = 1_000
    # grep stops after this many matching lines, and skips files bigger than this in directories.
    grep_max_matches: int = 500
    grep_max_file_bytes: int = 2_000_000
    max_password_length: int = 1_024
    # Not a knob: the sandbox's limits the tools run within, as the warden told them (the
    # contract's LIMITS_VARIABLE).
    sandbox: LimitsInForce = NO_LIMITS_SAID


# Frozen, so one shared instance is a safe default argument.
DEFAULT_LIMITS = ToolLimits()
