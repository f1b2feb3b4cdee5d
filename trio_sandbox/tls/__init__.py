"""Mutual TLS for trio_sandbox: identities, in-memory SSL contexts, hypercorn, the CA block; and
the per-sandbox interception CA of inject_secrets."""

from ..contract import combined_bundle as combined_bundle
from ._bundle import ClientBundlePaths as ClientBundlePaths
from ._bundle import load_client_ssl_context as load_client_ssl_context
from ._ca_block import CaBlock as CaBlock
from ._ca_block import CaBlockParser as CaBlockParser
from ._ca_block import format_ca_block as format_ca_block
from ._ca_block import read_ca_block as read_ca_block
from ._errors import CaBlockError as CaBlockError
from ._errors import InterceptionAuthorityError as InterceptionAuthorityError
from ._errors import InterceptionScopeError as InterceptionScopeError
from ._errors import NotAPrivateDirectoryError as NotAPrivateDirectoryError
from ._errors import UnsafeKeyPlaceError as UnsafeKeyPlaceError
from ._errors import UnusableCaError as UnusableCaError
from ._identity import DEFAULT_SERVER_HOSTNAMES as DEFAULT_SERVER_HOSTNAMES
from ._identity import HTTP_ALPN_PROTOCOLS as HTTP_ALPN_PROTOCOLS
from ._identity import CertificateChain as CertificateChain
from ._identity import MtlsIdentity as MtlsIdentity
from ._interception import INTERCEPTION_CA_COMMON_NAME as INTERCEPTION_CA_COMMON_NAME
from ._interception import InterceptionAuthority as InterceptionAuthority
from ._interception import InterceptionScope as InterceptionScope
from ._interception import LeafContexts as LeafContexts
from ._interception import upstream_context as upstream_context
from ._x509 import IssuedLeaf as IssuedLeaf
from ._x509 import LeafRole as LeafRole
