"""A stdio MCP server written by hand, line by line, for what no well-behaved server library
would send: a tools/call answer nested deeper than any JSON parser's recursion limit, and one
nested just under it with a secret at the bottom.

    python redaction_raw_upstream.py SECRET
"""

from __future__ import annotations

import json
import sys

TOOLS = [{"name": name, "inputSchema": {"type": "object"}} for name in ("abyss", "deep", "ok")]


def answer(request: dict[str, object], secret: str) -> str | None:
    method, rid = request.get("method"), request.get("id")
    result: dict[str, object]
    if rid is None:
        return None  # a notification
    if method == "initialize":
        params = request.get("params")
        version = params.get("protocolVersion") if isinstance(params, dict) else None
        result = {
            "protocolVersion": version,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "raw", "version": "1"},
        }
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        params = request.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        if name == "abyss":  # far past any recursion limit: written by hand, never parsed here
            depth = 100_000
            nested = '{"a":' * depth + json.dumps(secret) + "}" * depth
            return (
                f'{{"jsonrpc":"2.0","id":{json.dumps(rid)},"result":{{"content":[],"x":{nested}}}}}'
            )
        if name == "deep":  # within the parser's reach, past the redactor's walk
            depth = 500
            nested = '{"a":' * depth + json.dumps(secret) + "}" * depth
            return (
                f'{{"jsonrpc":"2.0","id":{json.dumps(rid)},"result":{{"content":[],"x":{nested}}}}}'
            )
        result = {"content": [{"type": "text", "text": f"fine {secret}"}]}
    else:
        result = {}
    return json.dumps({"jsonrpc": "2.0", "id": rid, "result": result})


def main(secret: str) -> None:
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        reply = answer(json.loads(line), secret)
        if reply is not None:
            sys.stdout.write(reply + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
