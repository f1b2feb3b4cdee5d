"""The bubblewrap back end (the default for ``host`` and root directories): namespaces, a
read-only root, seccomp, no capabilities.

``_command`` builds bwrap's command line, ``_start`` starts it before Trio is imported (the
sandbox boots while the warden's imports run), ``_supervise`` watches it from Trio (its
``--info-fd``, the published ports, stopping it), ``_idmap`` gives a root warden's sandbox
id-mapped views of the host's trees.
"""

from ._entry import BWRAP_BACKEND as BWRAP_BACKEND
