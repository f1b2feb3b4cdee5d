"""``trio-sandbox auth login|status|logout``: a person's side of the OAuth upstreams.

The upstreams are the ones ``proxy`` and ``run`` read (``--config``: an mcpServers file, JSON or
TOML); their tokens are kept in the user's token store (``$XDG_STATE_HOME/trio-sandbox/oauth``),
which a running proxy reads at its next connection attempt. Nothing here prints a token, a code
or a client secret. The work is in ``_auth_actions``, loaded when an auth command runs (it needs
httpx and authlib, which no other command's start should pay for).
"""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "auth",
        help="log in to the OAuth upstreams of an mcpServers file, and see or end those logins",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    actions = parser.add_subparsers(dest="auth_action", required=True, metavar="ACTION")

    login = actions.add_parser("login", help="run the browser (or device) flow for NAME")
    login.add_argument("name", metavar="NAME", help='an upstream with "auth": "oauth"')
    _config_option(login)
    login.add_argument(
        "--device",
        action="store_true",
        help="the device flow (a code to enter on another device) where the server offers it",
    )
    login.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for the browser to come back (default 300)",
    )
    login.set_defaults(handler=_login)

    status = actions.add_parser("status", help="the login of each OAuth upstream (or of NAME)")
    status.add_argument("name", metavar="NAME", nargs="?")
    _config_option(status)
    status.add_argument(
        "--check",
        action="store_true",
        help="ask the server (refreshing an expired token) instead of reading the store only",
    )
    status.add_argument("--json", action="store_true", help="one JSON object per upstream")
    status.set_defaults(handler=_status)

    logout = actions.add_parser(
        "logout", help="forget NAME's tokens (revoked at the server when it offers revocation)"
    )
    logout.add_argument("name", metavar="NAME")
    _config_option(logout)
    logout.set_defaults(handler=_logout)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        required=True,
        help="the mcpServers file (.json or .toml) that proxy or run is given",
    )


def _login(args: argparse.Namespace) -> int:
    from ._auth_actions import login_command

    return login_command(args)


def _status(args: argparse.Namespace) -> int:
    from ._auth_actions import status_command

    return status_command(args)


def _logout(args: argparse.Namespace) -> int:
    from ._auth_actions import logout_command

    return logout_command(args)
