"""The contract's names (DESIGN.md §2): one constant per wire string, variable and marker."""

from __future__ import annotations

import sys
from typing import Final

# Variables the host passes into the sandbox.
SKIP_WARDEN_VARIABLE: Final = "STAKPAK_SKIP_WARDEN"
MCP_PORT_VARIABLE: Final = "STAKPAK_MCP_PORT"
CLIENT_CA_VARIABLE: Final = "STAKPAK_MCP_CLIENT_CA"
# The port the tool server listens on inside; the warden publishes it on the host's loopback.
CONTAINER_PORT: Final = 8080

# What the tool server prints once it listens (lines are trimmed when parsed).
CA_BLOCK_BEGIN: Final = "---BEGIN STAKPAK SERVER CA---"
CA_BLOCK_END: Final = "---END STAKPAK SERVER CA---"
STARTED_LINE_PREFIX: Final = "MCP server started at "

# Where the warden binds the runtime of this package's own tool server (no volume may go there).
RUNTIME_ROOT: Final = "/.trio-sandbox"
# Names the variables that only start that runtime (PYTHONPATH, ...): the tool server removes
# them from the environment its commands get.
RUNTIME_VARS_VARIABLE: Final = "TRIO_SANDBOX_RUNTIME_VARS"
# The sandbox's limits for the tool server (JSON: each limit, what enforces the memory limit,
# and where the memory cgroup's files are, if they are shown): contract.LimitsInForce.
LIMITS_VARIABLE: Final = "TRIO_SANDBOX_LIMITS"
# The host's pid, set for the warden: the warden stops when that process is gone.
LIFELINE_VARIABLE: Final = "TRIO_SANDBOX_LIFELINE_PID"
# Our warden's extension of the command line: the write end of a pipe the host passes, where the
# warden writes its reports (JSON lines: limits, warnings, the egress audit). The warden's stdout
# and stderr carry the sandbox's output too, so the host trusts nothing read there.
REPORT_FD_OPTION: Final = "--report-fd"
# Our warden's extension for the sandbox's variables: a descriptor (a sealed memfd) holding
# ``K=V`` records, each ended by a NUL byte, read to its end. A value on the command line
# (``--env K=V``) is readable by every local user in /proc/PID/cmdline; this is not.
ENV_FD_OPTION: Final = "--env-fd"
# The most the warden reads from it.
ENV_FD_MAX_BYTES: Final = 4 * 1024 * 1024
# Our warden's extension for inject_secrets: ``--inject-secret NAME=HOST[,HOST...]`` (names and
# hosts only, repeatable) and ``--inject-fd N``, a sealed memfd holding the real values, their
# placeholders and the interception CA (JSON, contract.encode_injection), read to its end.
INJECT_SECRET_OPTION: Final = "--inject-secret"
INJECT_FD_OPTION: Final = "--inject-fd"
# The most the warden reads from it.
INJECT_FD_MAX_BYTES: Final = 1024 * 1024
# The longest report line the host reads (a longer one is dropped); the warden splits its reports.
REPORT_MAX_LINE_BYTES: Final = 64 * 1024
# With ``network = allow``: the sandbox's egress proxy as HOST:PORT (its own loopback), which the
# tool server asks for the refusals a command met; and the prefix of the warden's log lines about
# its decisions on stderr (for people: the host counts decisions from the report channel).
EGRESS_PROXY_VARIABLE: Final = "TRIO_SANDBOX_EGRESS_PROXY"
EGRESS_PORT: Final = 3128
EGRESS_LINE_PREFIX: Final = "trio-sandbox-warden: egress: "

# The module of this package's own tool server: the command the sandbox runs unless told otherwise.
TOOL_SERVER_MODULE: Final = "trio_sandbox.tools"


def default_tool_server_command() -> tuple[str, ...]:
    """This package's own tool server, run by the interpreter running the caller."""
    return (sys.executable, "-m", TOOL_SERVER_MODULE)


# The variables through which common clients find the roots they trust (OpenSSL, Python's ssl,
# requests, httpx, pip, curl, git, Node): each but Node's replaces its client's roots, so it
# names a bundle of the system's roots plus the interception CA; NODE_EXTRA_CA_CERTS adds to
# Node's built-in ones. Every command of a sandbox with injected secrets gets them.
TRUST_VARIABLES: Final = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "PIP_CERT",
)


def trust_environment(bundle: str) -> dict[str, str]:
    """The trust variables, all naming ``bundle`` (a path as the sandbox sees it)."""
    return dict.fromkeys(TRUST_VARIABLES, bundle)
