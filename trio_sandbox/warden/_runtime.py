"""The Python runtime the sandbox's own tool server needs, placed where no volume can cover it.

The ``host`` image shows the sandbox the host's /usr and /etc, nothing else of the host. This
package's tool server also needs its interpreter (perhaps a pyenv build outside /usr), the
site-packages of its virtualenv, and the package itself (perhaps an editable checkout). Binding
those at their host paths breaks as soon as a volume covers them (a checkout under /work and
``--volume ./project:/work``) and makes bubblewrap create mount points inside the user's volume.
So they are bound read-only under ``/.trio-sandbox`` — a path no volume may target — and a
command whose arguments name them (``/work/main/.venv/bin/python -m trio_sandbox.tools``) is
translated to their sandbox paths. The interpreter then runs with ``PYTHONPATH`` naming the
bound site directories; a shared-library build of Python gets ``LD_LIBRARY_PATH`` for its own
lib directory (its RUNPATH names the host path). The tool server removes those variables from
the environment its commands get (``RUNTIME_VARS_VARIABLE``).

Standard library only: the warden computes this before it imports Trio.
"""

from __future__ import annotations

import glob
import os
import site
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..contract import RUNTIME_ROOT, RUNTIME_VARS_VARIABLE


def is_within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


@dataclass(frozen=True, slots=True)
class RuntimeLayout:
    """Read-only binds (host path, sandbox path), the environment, and argv translations."""

    binds: tuple[tuple[str, str], ...]
    env: tuple[tuple[str, str], ...]
    # (host path, sandbox path): an argument equal to or below the host path is rewritten.
    translations: tuple[tuple[str, str], ...]
    # Host paths of interpreters that run as this runtime's interpreter in the sandbox.
    interpreters: frozenset[str]
    interpreter: str

    def translate(self, argv: Sequence[str]) -> list[str]:
        """``argv`` with host paths of the runtime replaced by their sandbox paths; the runtime's
        interpreter as the program runs with ``-S``: its packages come from ``PYTHONPATH``, and
        ``site`` would add only the base installation's own site-packages and run its ``.pth``
        files, host configuration that has no business in the sandbox (one seen here imports
        certifi and tries to append to its bundle at every start)."""
        out = []
        for index, arg in enumerate(argv):
            if arg in self.interpreters or (
                os.path.isabs(arg) and os.path.realpath(arg) in self.interpreters
            ):
                out += [self.interpreter, "-S"] if index == 0 else [self.interpreter]
                continue
            for host, inside in self.translations:
                if is_within(arg, host):
                    arg = inside + arg[len(host) :]
                    break
            out.append(arg)
        return out


def _site_dirs() -> list[str]:
    dirs = [*site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    # sys.path order, which is the order the host imports in; only directories that exist.
    ordered = [p for p in sys.path if p in dirs] + [d for d in dirs if d not in sys.path]
    return [os.path.realpath(d) for d in dict.fromkeys(ordered) if os.path.isdir(d)]


def runtime_layout(package_dir: str | None = None) -> RuntimeLayout:
    """The layout for this process's own interpreter and package (what the warden runs)."""
    package = os.path.realpath(package_dir or str(Path(__file__).resolve().parents[1]))
    base = os.path.realpath(sys.base_prefix)
    base_executable = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    binds: list[tuple[str, str]] = []
    env: list[tuple[str, str]] = []
    translations: list[tuple[str, str]] = []
    if is_within(base, "/usr"):
        base_inside = base  # the host's /usr is there already, and no volume may cover it
    else:
        base_inside = f"{RUNTIME_ROOT}/python"
        binds.append((base, base_inside))
        translations.append((base, base_inside))
        if glob.glob(os.path.join(base, "lib", "libpython*.so*")):
            env.append(("LD_LIBRARY_PATH", f"{base_inside}/lib"))
    interpreter = (
        base_inside + base_executable[len(base) :]
        if is_within(base_executable, base)
        else base_executable
    )
    python_path: list[str] = []
    visible = [(base, base_inside), ("/usr", "/usr")]
    if not any(is_within(package, host) for host, _ in visible) and not any(
        is_within(package, d) for d in _site_dirs()
    ):
        # An editable checkout: bind the package alone, not the rest of the checkout.
        inside = f"{RUNTIME_ROOT}/src/{os.path.basename(package)}"
        binds.append((package, inside))
        translations.append((package, inside))
        python_path.append(f"{RUNTIME_ROOT}/src")
    for index, directory in enumerate(_site_dirs()):
        if any(is_within(directory, host) for host, _ in visible):
            mapped = next(
                inside + directory[len(host) :]
                for host, inside in visible
                if is_within(directory, host)
            )
        else:
            mapped = f"{RUNTIME_ROOT}/site/{index}"
            binds.append((directory, mapped))
            translations.append((directory, mapped))
        python_path.append(mapped)
    env.append(("PYTHONPATH", ":".join(dict.fromkeys(python_path))))
    env.append(("PYTHONNOUSERSITE", "1"))
    names = [name for name, _ in env]
    env.append((RUNTIME_VARS_VARIABLE, ",".join([*names, RUNTIME_VARS_VARIABLE])))
    # Every spelling of this interpreter the host may pass: the venv's, the base's, resolved.
    interpreters = {sys.executable, base_executable, os.path.realpath(sys.executable)}
    prefix_bin = os.path.join(sys.prefix, "bin")
    interpreters.update(
        path for path in glob.glob(os.path.join(prefix_bin, "python*")) if os.path.isfile(path)
    )
    return RuntimeLayout(
        binds=tuple(binds),
        env=tuple(env),
        translations=tuple(translations),
        interpreters=frozenset(interpreters),
        interpreter=interpreter,
    )
