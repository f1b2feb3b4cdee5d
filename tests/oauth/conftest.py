"""The fixtures the OAuth client's tests share: a real authorization server and the MCP server
it protects (:mod:`.auth_world`), and an HTTP client for the client's requests to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from .auth_world import AuthWorld, open_auth_world


@pytest.fixture
async def world() -> AsyncIterator[AuthWorld]:
    async with open_auth_world() as world:
        yield world


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # No keep-alive: a jump of the virtual clock past hypercorn's keep-alive timeout closes an
    # idle connection at the very moment the next request reuses it (a race of the harness).
    async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as client:
        yield client
