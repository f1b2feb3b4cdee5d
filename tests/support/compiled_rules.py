"""A pytest plugin (``-p compiled_rules`` in pyproject): compile the redaction rules once, before
any test runs.

The proxy loads them in a worker thread the first time (about 15 ms), which a real clock
does not mind; a virtual clock (``MockClock(autojump_threshold=0)``) sees every task blocked on
that thread and jumps ahead, firing deadlines that real time would never reach. Compiled in
advance, the proxy takes them from the process cache and no thread is involved.
"""

from __future__ import annotations

import pytest

from trio_sandbox.redact import default_rules


def pytest_sessionstart(session: pytest.Session) -> None:
    default_rules()
