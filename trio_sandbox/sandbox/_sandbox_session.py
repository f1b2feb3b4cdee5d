"""``Sandbox.session()``: a sandbox of its own for one call site of the embedding program.

Its calls pass the proxy like any client's, each carrying the session's handle (``._handles``),
so they are served by a sandbox of their own, started on the first call; the block's end stops
it. It works in both modes: in the persistent mode too, a session's sandbox is a fresh one that
is never respawned (a call after it died gets a fresh sandbox again).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ..mcp import CallToolResult, McpClient, ProgressCallback, ResourceContents, Tool
from ._handles import HANDLE_META_KEY
from ._unserved import raise_if_unserved


@attrs.define(eq=False)
class SandboxSession:
    """A sandbox of its own for one call site; get one from ``Sandbox.session()``."""

    handle: str = attrs.field(repr=False)
    _local: McpClient

    @property
    def _meta(self) -> dict[str, Any]:
        return {HANDLE_META_KEY: self.handle}

    async def list_tools(self) -> list[Tool]:
        """The tools (the same for every sandbox of the proxy)."""
        return await self._local.list_tools()

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> CallToolResult:
        """Call a tool in this session's sandbox; raises as :meth:`Sandbox.call_tool` does."""
        result = await self._local.call_tool(
            name, arguments or {}, progress=progress, meta=self._meta
        )
        return raise_if_unserved(result)

    async def read_resource(self, uri: str) -> list[ResourceContents]:
        """Read a resource of this session's sandbox (or of the proxy)."""
        return await self._local.read_resource(uri, meta=self._meta)
