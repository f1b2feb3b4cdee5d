"""The podman and docker back ends as the core sees them (their Backend values)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._backend import Backend, Launched

if TYPE_CHECKING:
    from .._inject import InjectionMaterial
    from .._netns import NetnsHelper
    from .._spec import WrapSpec
    from .._stopping import StopGrace


async def _run(
    engine: str,
    helper: NetnsHelper | None,
    injection: InjectionMaterial | None,
    spec: WrapSpec,
    grace: StopGrace,
) -> int:
    from ._engine import run_container  # imports Trio: only once it runs

    return await run_container(engine, spec, grace, helper, injection)


def _launcher(engine: str) -> Callable[[WrapSpec], Launched]:
    def launch(spec: WrapSpec) -> Launched:
        from .._netns import start_netns_helper

        helper = start_netns_helper() if spec.reaches_into_netns else None
        try:
            from .._inject import read_injection

            injection = read_injection(spec)
        except BaseException:
            if helper is not None:
                helper.close()
            raise
        return Launched(functools.partial(_run, engine, helper, injection), helper)

    return launch


PODMAN_BACKEND = Backend(launch=_launcher("podman"))
DOCKER_BACKEND = Backend(launch=_launcher("docker"))
