"""The token store as the proxy's OAuth clients see it: what it hands out is redacted first,
and a refresh never overwrites a login that another process stored meanwhile."""

from __future__ import annotations

from pathlib import Path

from trio_sandbox.oauth import FileTokenStore, MemoryTokenStore, Tokens
from trio_sandbox.proxy._serve import RedactingStore


def sample(access: str) -> Tokens:
    return Tokens(
        server_url="https://mcp.example/mcp",
        issuer="https://as.example",
        token_endpoint="https://as.example/token",
        client_id="client",
        client_secret=f"secret-of-{access}",
        token_endpoint_auth_method="client_secret_post",
        access_token=access,
        refresh_token=f"refresh-of-{access}",
        expires_at=None,
        scope="mcp",
    )


def test_secrets_are_redacted_once_as_they_are_read(tmp_path: Path) -> None:
    files = FileTokenStore(tmp_path / "oauth")
    told: list[str] = []
    store = RedactingStore(files, told.append)
    assert store.load("sdk") is None
    files.save("sdk", sample("access-one"))
    store.load("sdk")
    store.load("sdk")
    assert told == ["access-one", "refresh-of-access-one", "secret-of-access-one"]


def test_a_refresh_never_overwrites_a_login_made_meanwhile(tmp_path: Path) -> None:
    files = FileTokenStore(tmp_path / "oauth")
    store = RedactingStore(files, lambda value: None)
    files.save("sdk", sample("before"))
    assert store.load("sdk") == sample("before")
    files.save("sdk", sample("login"))  # `trio-sandbox auth login sdk`, another process
    store.save("sdk", sample("refreshed-before"))
    assert files.load("sdk") == sample("login")
    # Once the proxy has read the login's tokens, its own refresh of them is stored.
    assert store.load("sdk") == sample("login")
    store.save("sdk", sample("refreshed-login"))
    assert files.load("sdk") == sample("refreshed-login")
    store.save("sdk", sample("again"))  # what it saved is what it last knew
    assert files.load("sdk") == sample("again")


def test_other_stores_are_written_through() -> None:
    memory = MemoryTokenStore()
    store = RedactingStore(memory, lambda value: None)
    store.save("sdk", sample("a"))
    assert memory.load("sdk") == sample("a")
