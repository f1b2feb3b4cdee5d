"""The egress proxy of ``network = allow``: policy on the host, SOCKS5 and HTTP inside the sandbox.

The sandbox has no network but its loopback; the warden listens inside its network namespace and
serves :func:`serve_egress_proxy` on that socket. Every destination is judged by an
:class:`EgressPolicy`, resolved on the host, its addresses vetted (no loopback, LAN or cloud
metadata unless listed), and dialed by address. With an :class:`Injection` (``inject_secrets``)
the proxy terminates TLS for the hosts a secret is scoped to and replaces its placeholder there
with the value, and refuses the placeholder everywhere else; the TLS contexts come from the
caller. Depends only on the stdlib, trio, attrs and :mod:`trio_sandbox.concurrency` (its byte
relay and broadcast value).
"""

from ._connections import MAX_REASON_CHARS as MAX_REASON_CHARS
from ._connections import MAX_TARGET_CHARS as MAX_TARGET_CHARS
from ._connections import OTHER_DESTINATIONS as OTHER_DESTINATIONS
from ._connections import ConnectionCallback as ConnectionCallback
from ._connections import ConnectionRecord as ConnectionRecord
from ._environment import proxy_environment as proxy_environment
from ._errors import DestinationError as DestinationError
from ._errors import InjectionError as InjectionError
from ._errors import PolicyError as PolicyError
from ._events import AUDIT_TABLES as AUDIT_TABLES
from ._events import MAX_DESTINATIONS as MAX_DESTINATIONS
from ._events import ChangesCallback as ChangesCallback
from ._events import DestinationCounters as DestinationCounters
from ._events import EgressEvent as EgressEvent
from ._events import EgressStats as EgressStats
from ._events import EventCallback as EventCallback
from ._events import EventLine as EventLine
from ._events import audit_totals as audit_totals
from ._inject import INJECT_SETTING as INJECT_SETTING
from ._inject import INTERCEPTED_PORTS as INTERCEPTED_PORTS
from ._inject import InjectedSecret as InjectedSecret
from ._inject import Injection as Injection
from ._inject import PlaceholderFound as PlaceholderFound
from ._inject import PlaceholderMatcher as PlaceholderMatcher
from ._inject import ResponseMask as ResponseMask
from ._inject import StreamingReplacer as StreamingReplacer
from ._names import IPAddress as IPAddress
from ._policy import ALLOW_SETTING as ALLOW_SETTING
from ._policy import DEFAULT_PORTS as DEFAULT_PORTS
from ._policy import DENY_SETTING as DENY_SETTING
from ._policy import Allowed as Allowed
from ._policy import Decision as Decision
from ._policy import Destination as Destination
from ._policy import DestinationRule as DestinationRule
from ._policy import EgressPolicy as EgressPolicy
from ._policy import RefusalKind as RefusalKind
from ._policy import Refused as Refused
from ._policy import RuleKind as RuleKind
from ._policy import Verdict as Verdict
from ._refusals import REFUSALS_PATH as REFUSALS_PATH
from ._refusals import ask_refusals as ask_refusals
from ._routing import Resolver as Resolver
from ._routing import Route as Route
from ._routing import find_route as find_route
from ._routing import system_resolver as system_resolver
from ._server import serve_egress_proxy as serve_egress_proxy
