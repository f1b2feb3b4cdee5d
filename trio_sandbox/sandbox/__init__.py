"""The sandbox lifecycle on one cancel scope: spawn, CA exchange, readiness, health, respawn."""

from ._config import SandboxConfig as SandboxConfig
from ._config import SandboxMode as SandboxMode
from ._errors import SandboxFailed as SandboxFailed
from ._errors import SandboxHandleError as SandboxHandleError
from ._errors import SandboxHandleRefused as SandboxHandleRefused
from ._errors import SandboxRestarted as SandboxRestarted
from ._errors import SandboxStartError as SandboxStartError
from ._errors import SandboxUnavailable as SandboxUnavailable
from ._errors import WardenExited as WardenExited
from ._handles import HANDLE_META_KEY as HANDLE_META_KEY
from ._handles import HANDLE_RESOURCE as HANDLE_RESOURCE
from ._handles import parse_handle as parse_handle
from ._health import SandboxHealth as SandboxHealth
from ._launcher import Launched as Launched
from ._launcher import Launcher as Launcher
from ._launcher import LaunchHooks as LaunchHooks
from ._launcher import warden_launcher as warden_launcher
from ._lifecycle import Sandbox as Sandbox
from ._lifecycle import open_sandbox as open_sandbox
from ._sandbox_session import SandboxSession as SandboxSession
from ._status import STATUS_URI as STATUS_URI
from ._unserved import RESTARTED_META_KEY as RESTARTED_META_KEY
from ._unserved import UNAVAILABLE_META_KEY as UNAVAILABLE_META_KEY
