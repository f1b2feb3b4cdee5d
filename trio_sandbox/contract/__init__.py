"""The host-to-sandbox contract (DESIGN.md §2): its names, and the grammar of its values.

An independent root of the package, standard library only: the warden reads it before it
imports Trio, and the tool server inside the sandbox reads it too. Every value that crosses
the contract as text (a limit, a volume, a network mode) is parsed here once into a frozen
value, and written back from it in one canonical form that parses to the same value.

- ``_names``: one constant per wire string (variables, markers, options);
- ``_sizes``: ``512M``, ``2G``;
- ``_limits``: the sandbox's resource limits (what the host asks, what the warden decides,
  what the tool server is told);
- ``_volumes``: ``HOST:CONTAINER[:ro]`` and its rules;
- ``_network``: the network modes;
- ``_injection``: inject_secrets' ``NAME=HOST[,HOST...]`` and its descriptor of real values;
- ``_errors``: SandboxError, the root of every error a user sees, and the grammar's errors.
"""

from ._errors import ContractValueError as ContractValueError
from ._errors import InjectionDataError as InjectionDataError
from ._errors import InjectRequestError as InjectRequestError
from ._errors import LimitError as LimitError
from ._errors import NetworkModeError as NetworkModeError
from ._errors import SandboxError as SandboxError
from ._errors import VolumeError as VolumeError
from ._injection import INJECT_NAME_PATTERN as INJECT_NAME_PATTERN
from ._injection import INJECT_VALUE_MIN_LENGTH as INJECT_VALUE_MIN_LENGTH
from ._injection import InjectedValue as InjectedValue
from ._injection import InjectionPayload as InjectionPayload
from ._injection import InjectRequest as InjectRequest
from ._injection import combined_bundle as combined_bundle
from ._injection import decode_injection as decode_injection
from ._injection import encode_injection as encode_injection
from ._injection import is_header_text as is_header_text
from ._injection import is_inject_name as is_inject_name
from ._injection import is_injectable_value as is_injectable_value
from ._injection import is_placeholder_special as is_placeholder_special
from ._limits import CPUS as CPUS
from ._limits import LIMIT_KINDS as LIMIT_KINDS
from ._limits import MEMORY as MEMORY
from ._limits import PER_COMMAND_RLIMIT as PER_COMMAND_RLIMIT
from ._limits import PIDS as PIDS
from ._limits import TMP_SIZE as TMP_SIZE
from ._limits import UNLIMITED as UNLIMITED
from ._limits import LimitKind as LimitKind
from ._limits import LimitRequest as LimitRequest
from ._limits import LimitsInForce as LimitsInForce
from ._limits import ResourceLimits as ResourceLimits
from ._limits import Unlimited as Unlimited
from ._names import CA_BLOCK_BEGIN as CA_BLOCK_BEGIN
from ._names import CA_BLOCK_END as CA_BLOCK_END
from ._names import CLIENT_CA_VARIABLE as CLIENT_CA_VARIABLE
from ._names import CONTAINER_PORT as CONTAINER_PORT
from ._names import EGRESS_LINE_PREFIX as EGRESS_LINE_PREFIX
from ._names import EGRESS_PORT as EGRESS_PORT
from ._names import EGRESS_PROXY_VARIABLE as EGRESS_PROXY_VARIABLE
from ._names import ENV_FD_MAX_BYTES as ENV_FD_MAX_BYTES
from ._names import ENV_FD_OPTION as ENV_FD_OPTION
from ._names import INJECT_FD_MAX_BYTES as INJECT_FD_MAX_BYTES
from ._names import INJECT_FD_OPTION as INJECT_FD_OPTION
from ._names import INJECT_SECRET_OPTION as INJECT_SECRET_OPTION
from ._names import LIFELINE_VARIABLE as LIFELINE_VARIABLE
from ._names import LIMITS_VARIABLE as LIMITS_VARIABLE
from ._names import MCP_PORT_VARIABLE as MCP_PORT_VARIABLE
from ._names import REPORT_FD_OPTION as REPORT_FD_OPTION
from ._names import REPORT_MAX_LINE_BYTES as REPORT_MAX_LINE_BYTES
from ._names import RUNTIME_ROOT as RUNTIME_ROOT
from ._names import RUNTIME_VARS_VARIABLE as RUNTIME_VARS_VARIABLE
from ._names import SKIP_WARDEN_VARIABLE as SKIP_WARDEN_VARIABLE
from ._names import STARTED_LINE_PREFIX as STARTED_LINE_PREFIX
from ._names import TOOL_SERVER_MODULE as TOOL_SERVER_MODULE
from ._names import TRUST_VARIABLES as TRUST_VARIABLES
from ._names import default_tool_server_command as default_tool_server_command
from ._names import trust_environment as trust_environment
from ._network import NetworkMode as NetworkMode
from ._sizes import MAX_SIZE as MAX_SIZE
from ._sizes import format_size as format_size
from ._sizes import parse_size as parse_size
from ._volumes import RESERVED_TARGETS as RESERVED_TARGETS
from ._volumes import Volume as Volume
from ._volumes import is_claim_volume as is_claim_volume
from ._volumes import is_named_volume as is_named_volume
