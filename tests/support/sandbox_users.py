"""The two kinds of user every sandbox behaviour is tested as: root, and an ordinary user.

A pytest plugin (``-p sandbox_users`` in pyproject): the ``sandbox_user`` fixture runs each test
that asks for it twice. As root (CI, containers) the ordinary user is ``trio-sandbox-test``,
made by ``.ci/install`` together with a virtualenv that user can execute (``.venv-user``, from
Debian's /usr/bin/python3: root's pyenv interpreter is not readable by others); commands run as
that user through ``setpriv``. As an ordinary user (a developer's own account), that account is
the ordinary user and the root case is skipped, saying why.

``workspace`` is a fresh project directory owned by the user: where a developer keeps their
project, and what the sandbox must be able to write without any chmod.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

REPO = Path(__file__).resolve().parents[2]
TEST_USER = "trio-sandbox-test"
USER_VENV = REPO / ".venv-user"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"


@attrs.frozen
class SandboxUser:
    """Who runs the warden or the CLI in a test, and with which interpreter."""

    kind: str  # "root" or "user"
    name: str
    uid: int
    gid: int
    home: Path
    python: str
    switch: bool  # the test process is root and runs the commands as this (other) user

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def command(self, *argv: str) -> list[str]:
        """``argv`` as this user would start it."""
        if not self.switch:
            return list(argv)
        return [
            SETPRIV,
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--init-groups",
            "--inh-caps=-all",
            "--",
            *argv,
        ]

    def python_module(self, module: str, *args: str) -> list[str]:
        return self.command(self.python, "-m", module, *args)

    async def run_json(
        self,
        *args: str,
        home: Path,
        stdin: bytes = b"",
        limit: float,
        env: Mapping[str, str] | None = None,
    ) -> Any:
        """``python ARGS`` as this user in ``home`` (also its HOME), ``env`` added to its
        environment: the JSON of the last line it prints. Fails the test with the end of its
        stderr if it exits non-zero."""
        with trio.fail_after(limit):
            done = await trio.run_process(
                self.command(self.python, *args),
                stdin=stdin,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=self.env({"HOME": str(home), **(env or {})}),
                cwd=home,
            )
        assert done.returncode == 0, done.stderr.decode()[-4000:]
        return json.loads(done.stdout.decode().splitlines()[-1])

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """This user's environment (their HOME, nothing of root's state), plus ``extra``."""
        env = dict(os.environ)
        if self.switch:
            for name in list(env):
                if name.startswith(("XDG_", "PYENV", "VIRTUAL_ENV")):
                    del env[name]
            env["HOME"] = str(self.home)
            env["USER"] = env["LOGNAME"] = self.name
            env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
        env.update(extra or {})
        return env


def _root() -> SandboxUser:
    return SandboxUser("root", "root", 0, 0, Path("/root"), sys.executable, switch=False)


def this_process_user() -> SandboxUser:
    """Whoever runs the tests, with the tests' own interpreter."""
    if os.geteuid() == 0:
        return _root()
    me = pwd.getpwuid(os.getuid())
    return SandboxUser(
        "user", me.pw_name, me.pw_uid, me.pw_gid, Path(me.pw_dir), sys.executable, False
    )


def _ordinary() -> SandboxUser | str:
    """The ordinary user, or why there is none here."""
    if os.geteuid() != 0:
        return this_process_user()
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        return f"no user {TEST_USER!r} (bash .ci/install creates it)"
    python = USER_VENV / "bin" / "python"
    if not python.exists():
        return f"no {USER_VENV} (bash .ci/install creates it)"
    return SandboxUser(
        "user", TEST_USER, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir), str(python), True
    )


def ordinary_user() -> SandboxUser:
    """The ordinary user, or the test is skipped with the reason."""
    found = _ordinary()
    if isinstance(found, str):
        pytest.skip(found)
    return found


@pytest.fixture(params=["root", "user"])
def sandbox_user(request: pytest.FixtureRequest) -> SandboxUser:
    if request.param == "root":
        if os.geteuid() != 0:
            pytest.skip("the root case needs the tests to run as root (as CI does)")
        return _root()
    return ordinary_user()


@pytest.fixture
def workspace(sandbox_user: SandboxUser, tmp_path: Path) -> Iterator[Path]:
    """A fresh, empty project directory owned by the user, mode 0700 (as a home often is)."""
    if sandbox_user.switch:
        base = sandbox_user.home / "trio-sandbox-tests"
        base.mkdir(exist_ok=True)
        os.chown(base, sandbox_user.uid, sandbox_user.gid)
        directory = base / uuid.uuid4().hex
    else:
        directory = tmp_path / "workspace"
    directory.mkdir(mode=0o700)
    os.chown(directory, sandbox_user.uid, sandbox_user.gid)
    try:
        yield directory
    finally:
        if sandbox_user.switch:
            shutil.rmtree(directory, ignore_errors=True)


def owners(paths: Sequence[Path]) -> list[tuple[int, int]]:
    return [(path.stat().st_uid, path.stat().st_gid) for path in paths]
