"""Which back end runs the sandbox: the one table of back ends by name, and ``auto``.

Standard library only (the choice is made before Trio is imported); each back end's package
defers its own heavy imports to the moment it runs.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Mapping

from ._backend import Backend
from ._errors import WrapRequestError
from ._spec import BackendName, WrapSpec
from .bwrap import BWRAP_BACKEND
from .container import DOCKER_BACKEND, PODMAN_BACKEND
from .kubernetes import KUBERNETES_BACKEND
from .unisolated import UNISOLATED_BACKEND

BACKENDS: Mapping[BackendName, Backend] = {
    "bwrap": BWRAP_BACKEND,
    "podman": PODMAN_BACKEND,
    "docker": DOCKER_BACKEND,
    "process": UNISOLATED_BACKEND,
    "kubernetes": KUBERNETES_BACKEND,
}
# What ``--backend`` accepts.
BACKEND_CHOICES: tuple[BackendName, ...] = ("auto", *BACKENDS)


def _engine_reachable(engine: str) -> bool:
    """podman runs without a daemon; the docker client needs a reachable service."""
    if engine == "podman":
        return True
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        probe = subprocess.run([engine, "version"], capture_output=True, timeout=5, check=False)
        return probe.returncode == 0
    return False


def choose_backend(spec: WrapSpec) -> BackendName:
    """`auto`: bubblewrap for `host` or a root directory, a reachable container engine for an
    OCI image, otherwise an error; never the unisolated process back end."""
    if spec.backend != "auto":
        if spec.backend == "bwrap" and not spec.image_is_root_fs:
            raise WrapRequestError(f"bwrap runs 'host' or a root directory, not {spec.image!r}")
        return spec.backend
    if spec.image_is_root_fs:
        if shutil.which("bwrap"):
            return "bwrap"
        raise WrapRequestError(
            f"image {spec.image!r} needs bubblewrap, which is not installed (Debian package"
            " 'bubblewrap'); --backend process runs WITHOUT isolation"
        )
    for engine in ("podman", "docker"):
        if shutil.which(engine) and _engine_reachable(engine):
            return "podman" if engine == "podman" else "docker"
    raise WrapRequestError(
        f"image {spec.image!r} needs a container engine, but neither podman nor a reachable"
        " docker was found; use IMAGE 'host' or a root file system directory with bubblewrap"
    )
