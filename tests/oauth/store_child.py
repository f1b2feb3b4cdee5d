"""Drives a FileTokenStore as whoever runs it (root, or the ordinary user): reads a plan
(``{"directory": ..., "ops": [[op, name, ...], ...]}``) on stdin, prints one JSON line of
results. Self-contained: the ordinary user's interpreter has trio_sandbox, not the tests.

ops: ``save NAME ACCESS`` (sample tokens with that access token), ``load NAME`` (the access
token, or null), ``delete NAME``, ``names``, ``count NAME TIMES`` (TIMES locked
read-modify-writes, each adding one to a counter kept in ``scope``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from trio_sandbox.oauth import FileTokenStore, OAuthError, Tokens


def sample(access: str, scope: str | None = None) -> Tokens:
    return Tokens(
        server_url="https://mcp.example/mcp",
        issuer="https://as.example",
        token_endpoint="https://as.example/token",
        client_id="client-1",
        client_secret="client-secret-value",
        token_endpoint_auth_method="client_secret_post",
        access_token=access,
        refresh_token="refresh-" + access,
        expires_at=2_000_000_000.0,
        scope=scope,
    )


def run(store: FileTokenStore, op: list[Any]) -> Any:
    kind, *rest = op
    if kind == "save":
        store.save(rest[0], sample(rest[1]))
        return None
    if kind == "load":
        tokens = store.load(rest[0])
        return None if tokens is None else tokens.access_token
    if kind == "delete":
        return store.delete(rest[0])
    if kind == "names":
        return store.names()
    if kind == "count":

        def add_one(tokens: Tokens | None) -> Tokens:
            count = int(tokens.scope or "0") if tokens is not None else 0
            return sample("counted", str(count + 1))

        for _ in range(rest[1]):
            store.update(rest[0], add_one)
        return None
    raise ValueError(kind)


def main() -> None:
    plan = json.loads(sys.stdin.read())
    store = FileTokenStore(plan["directory"])
    results: list[Any] = []
    for op in plan["ops"]:
        try:
            results.append({"ok": run(store, op)})
        except OAuthError as exc:
            results.append({"error": type(exc).__name__, "message": str(exc)})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
