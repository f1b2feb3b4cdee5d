"""The warden: `wrap` a command in a sandbox (bubblewrap, podman/docker, or unisolated).

Importing this package does not import Trio: the CLI starts bubblewrap first."""

from ._cli import choose_backend as choose_backend
from ._cli import main as main
from ._cli import parse_wrap_args as parse_wrap_args
from ._seccomp import deny_list_program as deny_list_program
from ._spec import PortSpec as PortSpec
from ._spec import WrapSpec as WrapSpec
from ._spec import WrapUsageError as WrapUsageError
from ._volumes import named_volume_dir as named_volume_dir
