"""The bubblewrap back end as the core sees it (its :class:`~.._backend.Backend` value)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from .._backend import Backend, Launched

if TYPE_CHECKING:
    from .._spec import WrapSpec
    from .._stopping import StopGrace
    from ._start import LaunchedBwrap


async def _supervise(launched: LaunchedBwrap, spec: WrapSpec, grace: StopGrace) -> int:
    from ._supervise import supervise_bwrap  # Trio's side: imported once Trio runs

    return await supervise_bwrap(launched, spec, grace)


def _launch(spec: WrapSpec) -> Launched:
    from ._start import launch_bwrap

    launched = launch_bwrap(spec)
    return Launched(functools.partial(_supervise, launched), launched.netns_helper)


BWRAP_BACKEND = Backend(launch=_launch)
