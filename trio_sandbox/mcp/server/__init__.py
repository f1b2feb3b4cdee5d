"""The server room: an :class:`McpServer` and the ways to serve it.

What a server offers (``_registry``), its method table (``_server``), listings and pagination
(``_listing``), a handler's context (``_context``), one client's session (``_session``), asking
the client for input mid-request (``_input_requests``), the stateless era's notification streams
(``_subscriptions``), request budgets (``_budget``), serving a message channel (``_duplex``) and
stdio (``_stdio``); the HTTP face is the ``http`` subpackage.
"""

from __future__ import annotations

from ._context import LOG_LEVELS as LOG_LEVELS
from ._context import OutgoingFilter as OutgoingFilter
from ._context import RequestContext as RequestContext
from ._duplex import serve_duplex as serve_duplex
from ._duplex import serve_messages as serve_messages
from ._identity import IDENTITY_SCOPE_KEY as IDENTITY_SCOPE_KEY
from ._identity import ClientIdentity as ClientIdentity
from ._identity import IdentityKind as IdentityKind
from ._identity import identity_of_scope as identity_of_scope
from ._identity import set_scope_identity as set_scope_identity
from ._input_requests import InputRequest as InputRequest
from ._input_requests import InputRequired as InputRequired
from ._input_requests import RequestStateCodec as RequestStateCodec
from ._listing import CACHEABLE_LISTINGS as CACHEABLE_LISTINGS
from ._listing import HANDSHAKE_ONLY_METHODS as HANDSHAKE_ONLY_METHODS
from ._listing import LIST_RESULT_KEYS as LIST_RESULT_KEYS
from ._listing import CacheHint as CacheHint
from ._listing import match_uri_template as match_uri_template
from ._listing import paginate as paginate
from ._listing import string_param as string_param
from ._registry import ToolHandler as ToolHandler
from ._registry import ToolReturn as ToolReturn
from ._server import McpServer as McpServer
from ._server import MethodHandler as MethodHandler
from ._session import ServerSession as ServerSession
from ._stdio import serve_stdio as serve_stdio
