"""The container back ends: podman and docker, ``run --rm -i --init`` mapped from the warden's
command line (``_engine``), with the sandbox's network namespace reached as bubblewrap's is."""

from ._entry import DOCKER_BACKEND as DOCKER_BACKEND
from ._entry import PODMAN_BACKEND as PODMAN_BACKEND
