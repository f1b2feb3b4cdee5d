"""The unisolated back end (``--backend process``): the command runs directly on this host.
NOTHING is isolated; for development only (``_host_process``)."""

from ._entry import UNISOLATED_BACKEND as UNISOLATED_BACKEND
