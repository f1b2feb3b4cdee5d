"""Session fixtures of the egress tests: the site, and real HTTP and HTTPS origins serving it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from egress_harness import Certificates, Origin, build_site, make_certificates, origin_server

# The names the tools ask the proxy for; the tests' resolver maps every *.test name to 127.0.0.1.
HTTPS_NAMES = ("secure.test", "pypi.test", "blocked.test")


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("egress-site") / "site"
    build_site(root)
    return root


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("egress-tls"), HTTPS_NAMES)


@pytest.fixture(scope="session")
def http_origin(site: Path) -> Iterator[Origin]:
    with origin_server(site) as origin:
        yield origin


@pytest.fixture(scope="session")
def https_origin(site: Path, certificates: Certificates) -> Iterator[Origin]:
    with origin_server(site, certificates) as origin:
        yield origin
