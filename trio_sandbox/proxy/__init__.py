"""The aggregating MCP proxy: one endpoint in front of the sandbox and any other MCP servers."""

from ._aggregate import ProxyServer as ProxyServer
from ._auth import require_bearer_token as require_bearer_token
from ._names import MAX_NAME_LENGTH as MAX_NAME_LENGTH
from ._names import SEPARATOR as SEPARATOR
from ._names import NameCollisionError as NameCollisionError
from ._names import check_prefixes as check_prefixes
from ._names import exposed_name as exposed_name
from ._serve import HttpFace as HttpFace
from ._serve import ProxyFace as ProxyFace
from ._serve import ProxyHandle as ProxyHandle
from ._serve import StdioFace as StdioFace
from ._serve import serve_proxy as serve_proxy
from ._spec import ConfigError as ConfigError
from ._spec import HttpUpstream as HttpUpstream
from ._spec import InProcessUpstream as InProcessUpstream
from ._spec import StdioUpstream as StdioUpstream
from ._spec import UpstreamSpec as UpstreamSpec
from ._spec import WebSocketUpstream as WebSocketUpstream
from ._spec import client_ssl_context as client_ssl_context
from ._spec import effective_prefix as effective_prefix
from ._spec import load_upstreams as load_upstreams
from ._upstream import ClientHooks as ClientHooks
from ._upstream import Upstream as Upstream
from ._upstream import UpstreamState as UpstreamState
from ._upstream import UpstreamStatus as UpstreamStatus
from ._upstream import UpstreamUnavailable as UpstreamUnavailable
