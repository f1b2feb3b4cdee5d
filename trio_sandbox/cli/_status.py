"""``trio-sandbox status --url URL``: the health of a running instance, as JSON.

It reads the proxy's ``trio-sandbox://status`` resource over MCP, authenticating the way the
running instance asked for: its client bundle, a bearer token, or nothing (plain HTTP).
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from typing import Any

import trio

from ..mcp import McpConnectionError, McpError, open_mcp_client
from ..sandbox import STATUS_URI
from ..tls import load_client_ssl_context
from ._errors import UsageError
from ._options import read_token


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("status", help="print the health of a running instance as JSON")
    parser.add_argument("--url", required=True, help="the proxy URL that 'run' printed")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--client-cert-dir", metavar="DIR", help="the client bundle 'run' wrote")
    auth.add_argument("--token-file", metavar="FILE", help="the bearer token the proxy serves")
    parser.add_argument("--ca", metavar="FILE", help="CA to trust with --token-file (ca.pem)")
    parser.set_defaults(handler=status_command)


def status_command(args: argparse.Namespace) -> int:
    ssl_context: ssl.SSLContext | None = None
    headers: dict[str, str] = {}
    if args.client_cert_dir:
        try:
            ssl_context = load_client_ssl_context(args.client_cert_dir)
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise UsageError(f"--client-cert-dir: {exc}") from None
    elif args.token_file:
        headers["Authorization"] = f"Bearer {read_token(args.token_file)}"
        ssl_context = ssl.create_default_context(cafile=args.ca) if args.ca else None
    elif args.url.startswith("https://"):
        raise UsageError("an https:// URL needs --client-cert-dir or --token-file")
    try:
        status = trio.run(_read_status, args.url, ssl_context, headers)
    except (McpConnectionError, McpError) as exc:
        print(f"trio-sandbox: cannot read the status of {args.url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2, sort_keys=True))
    health = status.get("health")
    return 0 if isinstance(health, dict) and health.get("healthy") else 1


async def _read_status(
    url: str, ssl_context: ssl.SSLContext | None, headers: dict[str, str]
) -> Any:
    async with open_mcp_client(url, ssl_context=ssl_context, headers=headers) as client:
        contents = await client.read_resource(STATUS_URI)
    if not contents or contents[0].text is None:
        raise McpError(-32603, "the status resource was empty")
    return json.loads(contents[0].text)
