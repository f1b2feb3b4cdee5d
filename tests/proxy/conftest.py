"""Lets the proxy tests reuse the helpers of tests/mcp and tests/conformance by module name."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
for shared in (TESTS / "mcp", TESTS / "conformance"):
    if str(shared) not in sys.path:
        sys.path.insert(0, str(shared))
