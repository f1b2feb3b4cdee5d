"""The bwrap command line the warden builds, checked without running it."""

from __future__ import annotations

from trio_sandbox.warden.bwrap._command import _missing_parents


def test_parents_under_tmp_are_made_traversable() -> None:
    # /tmp is a fresh tmpfs in the sandbox: a checkout under it needs its parents created (bwrap
    # would create them 0700, which the sandbox's uid 65534 cannot cross).
    assert _missing_parents(["/tmp/ci/clone/.venv"]) == ["/tmp/ci", "/tmp/ci/clone"]


def test_parents_bound_from_the_host_are_not_made_again() -> None:
    assert _missing_parents(["/usr/lib/python3/dist-packages"]) == []
    assert _missing_parents(["/root/.pyenv/versions/3.11.7"]) == [
        "/root",
        "/root/.pyenv",
        "/root/.pyenv/versions",
    ]
