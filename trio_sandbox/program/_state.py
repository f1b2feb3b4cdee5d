"""Where the program keeps per-user state (the client bundle, OAuth tokens)."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """``$XDG_STATE_HOME/trio-sandbox``, else ``~/.local/state/trio-sandbox`` (XDG base dirs:
    a relative ``XDG_STATE_HOME`` is invalid and ignored)."""
    state = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):
        state = os.path.join(Path.home(), ".local", "state")
    return Path(state) / "trio-sandbox"
