"""OAuth 2.1 for MCP servers that need it, as the MCP authorization spec describes: one
:class:`OAuthClient` per upstream authorizes the requests of the MCP HTTP transport
(``mcp.HttpAuth``): discovery (protected resource metadata, authorization server metadata),
registration (pre-registered, client ID metadata document, dynamic registration), the
authorization code grant with PKCE, refresh, client credentials, step-up on
``insufficient_scope``.

The person's side (a browser and its redirect) is a :class:`UserAgent`; tokens are kept by a
:class:`TokenStore`.
"""

from ._client import DevicePrompt as DevicePrompt
from ._client import OAuthClient as OAuthClient
from ._errors import LoginRequired as LoginRequired
from ._errors import OAuthError as OAuthError
from ._errors import TokenStoreError as TokenStoreError
from ._loopback import CALLBACK_PATH as CALLBACK_PATH
from ._loopback import LoopbackUserAgent as LoopbackUserAgent
from ._revocation import revocation_endpoint as revocation_endpoint
from ._settings import OAuthSettings as OAuthSettings
from ._status import AuthState as AuthState
from ._status import AuthStatus as AuthStatus
from ._store import FileTokenStore as FileTokenStore
from ._store import TokenStoreBusy as TokenStoreBusy
from ._store import check_store_name as check_store_name
from ._store import default_token_dir as default_token_dir
from ._tokens import MemoryTokenStore as MemoryTokenStore
from ._tokens import Tokens as Tokens
from ._tokens import TokenStore as TokenStore
from ._user_agent import Redirect as Redirect
from ._user_agent import UserAgent as UserAgent
