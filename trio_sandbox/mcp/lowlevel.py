"""What only the other layers of trio_sandbox need from MCP (trio's ``trio.lowlevel`` way): the
building blocks of a proxy (pagination, listing keys, URI templates, method eras, raw method
handlers, sessions), the JSON-RPC codec, ``_meta`` keys, and the HTTP face's refusal.

A user of the SDK should not need these; they may change without notice.
"""

from __future__ import annotations

from .protocol import META_LOG_LEVEL as META_LOG_LEVEL
from .protocol import META_PROTOCOL_VERSION as META_PROTOCOL_VERSION
from .protocol import META_RESERVED_PREFIX as META_RESERVED_PREFIX
from .protocol import HttpRefusal as HttpRefusal
from .protocol import MessageDecodeError as MessageDecodeError
from .protocol import decode_message as decode_message
from .protocol import dump_message as dump_message
from .protocol import encode_message as encode_message
from .protocol import has_resource_links as has_resource_links
from .protocol import is_stateless as is_stateless
from .protocol import parse_json as parse_json
from .server import CACHEABLE_LISTINGS as CACHEABLE_LISTINGS
from .server import HANDSHAKE_ONLY_METHODS as HANDSHAKE_ONLY_METHODS
from .server import IDENTITY_SCOPE_KEY as IDENTITY_SCOPE_KEY
from .server import LIST_RESULT_KEYS as LIST_RESULT_KEYS
from .server import LOG_LEVELS as LOG_LEVELS
from .server import CacheHint as CacheHint
from .server import MethodHandler as MethodHandler
from .server import RequestStateCodec as RequestStateCodec
from .server import ServerSession as ServerSession
from .server import identity_of_scope as identity_of_scope
from .server import match_uri_template as match_uri_template
from .server import paginate as paginate
from .server import set_scope_identity as set_scope_identity
from .server import string_param as string_param
from .server.http import serve_lifespan as serve_lifespan
