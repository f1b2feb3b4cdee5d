"""The in-memory harness fixture: a tool server on a temporary working directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.tools.tools_harness import ToolClient, fast_limits
from trio_sandbox.tools import open_tool_server


@pytest.fixture
async def tool_client(tmp_path: Path) -> AsyncIterator[ToolClient]:
    async with open_tool_server(workdir=tmp_path, limits=fast_limits()) as server:
        yield ToolClient(server, server.open_session())
