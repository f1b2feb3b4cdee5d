"""The warden: `wrap` a command in a sandbox (bubblewrap, podman/docker, unisolated, or a
Kubernetes Pod).

The core (this folder) reads the command line into a :class:`WrapSpec` (``_cli``, ``_spec``,
``_limits``, ``_volumes``), chooses a back end from one table (``_choice``; the interface is
``_backend``), launches it, then supervises it under Trio (``_supervisor``: signals, the
lifeline of ``_stopping``, the exit status). It also holds what several back ends share:
children started before Trio and watched after (``_child_start``, ``_children``, ``_pidfd``),
published ports (``_ports``, ``_publish``), the sandbox's network namespace (``_netns``), its
egress proxy (``_egress``), seccomp rules (``_seccomp``), /proc and /dev/shm (``_procfs``,
``_memfs``), the tool server's runtime (``_runtime``), reports (``_report``) and errors
(``_errors``). Each back end is a subpackage: ``bwrap``, ``container``, ``unisolated``,
``kubernetes``.

Importing this package does not import Trio: the CLI starts bubblewrap first."""

from ._choice import choose_backend as choose_backend
from ._cli import main as main
from ._cli import parse_wrap_args as parse_wrap_args
from ._errors import WrapRequestError as WrapRequestError
from ._seccomp import deny_list_program as deny_list_program
from ._spec import PortSpec as PortSpec
from ._spec import WrapSpec as WrapSpec
from ._volumes import named_volume_dir as named_volume_dir
