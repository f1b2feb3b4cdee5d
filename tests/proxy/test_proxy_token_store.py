"""The token store as the proxy's OAuth clients see it: what it hands out is redacted first,
a refresh never overwrites a login that another process stored meanwhile, and a lock held by
another process never stalls the proxy (review findings 1 and 3)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from tests.oauth.auth_world import HeadlessUserAgent, open_auth_world
from trio_sandbox.oauth import (
    FileTokenStore,
    MemoryTokenStore,
    OAuthClient,
    OAuthSettings,
    Tokens,
    TokenStoreBusy,
)
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


def test_a_refresh_replaces_only_what_it_started_from(tmp_path: Path) -> None:
    files = FileTokenStore(tmp_path / "oauth")
    store = RedactingStore(files, lambda value: None)
    files.save("sdk", sample("before"))
    assert store.load("sdk") == sample("before")
    files.save("sdk", sample("login"))  # `trio-sandbox auth login sdk`, another process
    assert store.load("sdk") == sample("login")  # read meanwhile by another call
    # The refresh started from "before": the login stays, whatever was read since.
    assert store.replace("sdk", sample("refreshed-before"), sample("before")) == sample("login")
    assert files.load("sdk") == sample("login")
    assert store.replace("sdk", sample("refreshed-login"), sample("login")) == sample(
        "refreshed-login"
    )
    assert files.load("sdk") == sample("refreshed-login")


def test_other_stores_are_written_through() -> None:
    memory = MemoryTokenStore()
    store = RedactingStore(memory, lambda value: None)
    store.save("sdk", sample("a"))
    assert memory.load("sdk") == sample("a")


def _hold_lock(directory: Path) -> subprocess.Popen[bytes]:
    # exec: the sleeping process itself holds the lock (killing it releases it).
    holder = subprocess.Popen(["flock", "-x", "--no-fork", str(directory / ".lock"), "sleep", "30"])
    deadline = time.monotonic() + 5
    probe = FileTokenStore(directory, lock_wait=0)
    while time.monotonic() < deadline:  # until the holder has it
        try:
            probe.delete("nothing")
        except TokenStoreBusy:
            return holder
        time.sleep(0.02)
    holder.kill()
    raise AssertionError("flock never took the lock")


def test_a_held_lock_stalls_no_reader_and_no_proxy_writer(tmp_path: Path) -> None:
    files = FileTokenStore(tmp_path / "oauth")
    files.save("sdk", sample("before"))
    holder = _hold_lock(tmp_path / "oauth")
    try:
        started = time.monotonic()
        assert files.load("sdk") == sample("before")  # no reader lock
        proxy = RedactingStore(FileTokenStore(tmp_path / "oauth", lock_wait=0), lambda v: None)
        proxy.save("sdk", sample("refreshed"))  # cannot write now: kept, handed out
        assert proxy.load("sdk") == sample("refreshed")
        assert time.monotonic() - started < 1
        assert files.load("sdk") == sample("before")
        with pytest.raises(TokenStoreBusy, match="locked by another process"):
            FileTokenStore(tmp_path / "oauth", lock_wait=0.2).save("sdk", sample("x"))
    finally:
        holder.kill()
        holder.wait()
    assert proxy.load("sdk") == sample("refreshed")  # written at this use
    assert files.load("sdk") == sample("refreshed")


def test_an_unchanged_file_is_not_parsed_again(tmp_path: Path) -> None:
    files = FileTokenStore(tmp_path / "oauth")
    files.save("sdk", sample("a"))
    first = files.load("sdk")
    assert files.load("sdk") is first
    FileTokenStore(tmp_path / "oauth").save("sdk", sample("b"))  # another process
    assert files.load("sdk") == sample("b")


async def test_a_login_during_a_refresh_wins_though_other_calls_read_it(tmp_path: Path) -> None:
    files = FileTokenStore(tmp_path / "oauth")
    async with open_auth_world() as world, httpx.AsyncClient() as http:
        person = OAuthClient(
            "up", world.mcp_url, OAuthSettings(), files, http, user_agent=HeadlessUserAgent(http)
        )
        first = await person.login()
        files.save("up", attrs.evolve(first, expires_at=1.0))  # expired: the proxy refreshes
        store = RedactingStore(FileTokenStore(tmp_path / "oauth", lock_wait=0), lambda v: None)
        proxy = OAuthClient("up", world.mcp_url, OAuthSettings(), store, http)
        world.token_gate = trio.Event()
        world.token_requested = trio.Event()  # set by the refresh (the login's request is done)
        login = attrs.evolve(
            first, access_token="LOGIN-" + "y" * 30, refresh_token="LOGIN-R-" + "y" * 30
        )
        login = attrs.evolve(login, expires_at=4e9)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(proxy.authorization)  # a refresh, held at the AS
            await world.token_requested.wait()
            files.save("up", login)  # `trio-sandbox auth login up`, another process
            assert await proxy.authorization() == f"Bearer {login.access_token}"
            world.token_gate.set()
        assert world.refresh_processed.is_set()  # the refresh did happen, and succeeded
        assert files.load("up") == login
        assert await proxy.authorization() == f"Bearer {login.access_token}"
