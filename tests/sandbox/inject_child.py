"""A program embedding ``open_sandbox`` with inject_secrets, run as root and as the ordinary user.

Reads its plan (JSON on stdin: ``name``, ``entry`` — the HTTPS origin the secret is injected
for —, ``other`` — another allowed host, plain HTTP —, ``unlisted``, ``commands`` — more
commands to run, by name) and the secret's value from
its environment (the variable ``name``), runs real clients in the sandbox and prints one JSON
line: what each command answered, ``status()``, every log record, and where the value was seen
in ``/proc`` of the processes it may read (the embedding process aside). The test checks that
the value is in none of it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import trio

from trio_sandbox import SandboxConfig, open_sandbox

URLLIB = (
    "import os, urllib.request as u; r = u.Request('{url}', headers={{'Authorization':"
    " 'token ' + os.environ['{name}']}}); print(u.urlopen(r, timeout=20).read().decode())"
)


def value_holders(value: bytes, name: str) -> dict[str, list[str]]:
    """Processes (not this one, not the origin servers) whose command line or environment
    holds the value, and wardens whose environment has the variable at all."""
    found: dict[str, list[str]] = {"value": [], "warden_has_name": [], "wardens_read": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or another user's
        if b"origin_server.py" in cmdline:
            continue  # the test's origin knows the value it expects
        if value in cmdline or value in environ:
            found["value"].append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
        if b"trio_sandbox.warden" in cmdline:
            found["wardens_read"].append(entry.name)
        if b"trio_sandbox.warden" in cmdline and any(
            item.startswith(f"{name}=".encode()) for item in environ.split(b"\0")
        ):
            found["warden_has_name"].append(entry.name)
    return found


async def main() -> None:
    plan = json.loads(sys.stdin.read())
    name, entry, other, unlisted = plan["name"], plan["entry"], plan["other"], plan["unlisted"]
    value = os.environ[name]
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    config = SandboxConfig(
        network="allow",
        inject_secrets={name: [entry]},
        allow_domains=[other],
        stop_grace=5.0,
    )
    report: dict[str, Any] = {}
    url = f"https://{entry}/auth"
    async with open_sandbox(config) as sandbox:

        async def run(command: str) -> str:
            result = await sandbox.call_tool("run_command", {"command": command})
            return result.text_content

        report["curl"] = await run(f'curl -sS -H "Authorization: Bearer ${name}" {url}')
        report["urllib"] = await run(f'python3 -c "{URLLIB.format(url=url, name=name)}"')
        report["reversed"] = await run(f'printf %s "${name}" | rev')
        # Reversed: the redaction rules would redact a token-shaped header (the placeholder).
        report["headers"] = await run(
            f'curl -sS -D - -o /dev/null -H "Authorization: Bearer ${name}" {url}'
            " | grep -i '^x-seen-authorization:' | tr -d '\\r' | rev"
        )
        report["no_token"] = await run(f"curl -sS {url}")
        report["elsewhere"] = await run(f'curl -sS "http://{other}/hello.txt?t=${name}"')
        report["unlisted"] = await run(f'curl -sS -H "X-Api-Key: ${name}" http://{unlisted}/')
        for key, command in plan["commands"].items():
            report[key] = await run(command)
        report["status"] = sandbox.status()
        report["proc"] = value_holders(value.encode(), name)
    logging.getLogger().removeHandler(handler)
    report["log"] = log.getvalue()
    report["value_in_report"] = value in json.dumps(report)
    print(json.dumps(report))


trio.run(main)
