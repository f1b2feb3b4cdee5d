"""The kubernetes back end on a real cluster, when one is named.

Set ``TRIO_SANDBOX_K8S_TEST_CONTEXT`` to a kubeconfig context (and, if needed,
``TRIO_SANDBOX_K8S_TEST_NAMESPACE`` and ``TRIO_SANDBOX_K8S_TEST_IMAGE``: an image with Python
and this package, whose ``python3 -m trio_sandbox.tools`` is the tool server). Without the
context every test here is skipped, and the skip says why.
"""

from __future__ import annotations

import os

import pytest

from trio_sandbox.sandbox import SandboxConfig, open_sandbox

CONTEXT = os.environ.get("TRIO_SANDBOX_K8S_TEST_CONTEXT", "")
NAMESPACE = os.environ.get("TRIO_SANDBOX_K8S_TEST_NAMESPACE", "")
IMAGE = os.environ.get("TRIO_SANDBOX_K8S_TEST_IMAGE", "ghcr.io/trio-sandbox/tools:latest")

pytestmark = pytest.mark.skipif(
    not CONTEXT,
    reason="no real cluster: set TRIO_SANDBOX_K8S_TEST_CONTEXT to a kubeconfig context to run",
)


@pytest.fixture
def real_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIO_SANDBOX_K8S_CONTEXT", CONTEXT)
    if NAMESPACE:
        monkeypatch.setenv("TRIO_SANDBOX_K8S_NAMESPACE", NAMESPACE)


@pytest.mark.usefixtures("real_cluster")
async def test_a_tool_call_on_the_cluster() -> None:
    config = SandboxConfig(backend="kubernetes", warm_spares=0, image=IMAGE, ca_timeout=300)
    async with open_sandbox(config) as sandbox:
        result = await sandbox.call_tool(
            "run_command", {"command": "id -u; cat /proc/1/cgroup | head -1"}
        )
        assert not result.is_error
        text = "".join(getattr(item, "text", "") for item in result.content)
        assert text.splitlines()[0] == "65534"
