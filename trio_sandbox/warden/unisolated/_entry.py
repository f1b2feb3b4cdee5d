"""The unisolated back end as the core sees it (its Backend value)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._backend import Backend, Launched

if TYPE_CHECKING:
    from .._spec import WrapSpec
    from .._stopping import StopGrace


async def _run(spec: WrapSpec, grace: StopGrace) -> int:
    from ._host_process import run_unisolated  # imports Trio: only once it runs

    return await run_unisolated(spec, grace)


def _launch(spec: WrapSpec) -> Launched:
    return Launched(_run)


UNISOLATED_BACKEND = Backend(launch=_launch, isolates=False)
