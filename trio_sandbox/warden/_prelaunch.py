"""What the warden starts before it imports Trio (standard library only)."""

from __future__ import annotations

import attrs

from ._bwrap import LaunchedBwrap
from ._netns import NetnsHelper


@attrs.frozen
class Prelaunch:
    """Bubblewrap itself, or a container back end's namespace helper, started while the warden
    is still single-threaded."""

    bwrap: LaunchedBwrap | None = None
    netns_helper: NetnsHelper | None = None
    # A pidfd of the warden's parent (the lifeline), ORPHANED, or None (nothing to watch).
    lifeline: int | None = None
