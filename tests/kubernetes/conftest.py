"""The API server double as fixtures: ``double`` (served for one test), ``cluster_env`` (the
host's environment names it, as a user's shell would)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.kubernetes.kube_double import KubeDouble, open_kube_double


@pytest.fixture
async def double(tmp_path: Path) -> AsyncIterator[KubeDouble]:
    async with open_kube_double(tmp_path) as served:
        yield served


@pytest.fixture
def cluster_env(double: KubeDouble, monkeypatch: pytest.MonkeyPatch) -> KubeDouble:
    """The host's environment names the double, as a user's shell would."""
    monkeypatch.setenv("KUBECONFIG", str(double.kubeconfig))
    monkeypatch.setenv("TRIO_SANDBOX_K8S_PYTHON", sys.executable)
    monkeypatch.setenv("TRIO_SANDBOX_K8S_START_TIMEOUT", "30")
    return double
