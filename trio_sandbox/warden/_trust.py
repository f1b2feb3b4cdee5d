"""How a sandbox trusts the interception CA of inject_secrets, with no action from its user.

Both halves, for both rooms (bubblewrap, a container engine): the system bundle seen inside is
replaced by a copy of itself plus the CA (programs that scrub their environment, ``env -i`` or
sudo, still read it), and every command gets the variables that name it (:data:`TRUST_VARIABLES`:
each replaces its client's roots by that file, except ``NODE_EXTRA_CA_CERTS``, which adds).

The bundle is found *inside* the sandbox's root: each candidate path is resolved there, its links
followed relative to that root (never the host's ``realpath`` on an image's path). Every distinct
regular file found is covered (on Debian ``/usr/lib/ssl/cert.pem`` links to
``/etc/ssl/certs/ca-certificates.crt``: one file covers both), each with the first one's
contents plus the CA. Standard library only: bubblewrap starts before Trio is imported.
"""

from __future__ import annotations

import collections
import os
import stat
from dataclasses import dataclass, field
from typing import Final

from ..contract import combined_bundle, trust_environment
from ._errors import WrapRequestError

# Where distributions keep their system bundle (Debian/Ubuntu/Alpine, Fedora/RHEL, its extracted
# store, openSUSE, the BSD-style and OpenSSL's own default places).
SYSTEM_BUNDLES: Final = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/lib/ssl/cert.pem",
)
# As the kernel: more links than this on one path is a loop.
_MAX_LINKS: Final = 40


def resolve_inside(root: str, path: str) -> str | None:
    """``path`` (absolute, as the sandbox sees it) with every symbolic link followed as the
    sandbox would, relative to ``root``; None when it does not exist there or loops."""
    pending = collections.deque(part for part in path.split("/") if part)
    resolved = "/"
    hops = 0
    while pending:
        part = pending.popleft()
        if part == ".":
            continue
        if part == "..":
            resolved = os.path.dirname(resolved)
            continue
        candidate = os.path.join(resolved, part)
        on_host = os.path.join(root, candidate.lstrip("/"))
        try:
            mode = os.lstat(on_host).st_mode
        except OSError:
            return None
        if not stat.S_ISLNK(mode):
            resolved = candidate
            continue
        hops += 1
        if hops > _MAX_LINKS:
            return None
        try:
            target = os.readlink(on_host)
        except OSError:
            return None
        if target.startswith("/"):
            resolved = "/"
        pending.extendleft(reversed([part for part in target.split("/") if part]))
    return resolved


@dataclass(frozen=True, slots=True)
class TrustPlan:
    """What makes the sandbox trust the CA: ``data`` (its system bundle plus the CA) over each
    of ``targets`` (regular files inside, links resolved), and ``env`` naming ``path``."""

    data: bytes = field(repr=False)
    targets: tuple[str, ...]
    path: str
    env: tuple[tuple[str, str], ...]


def plan_trust(root: str, ca_pem: str) -> TrustPlan:
    """The plan for a sandbox whose root file system is ``root`` on the host; WrapRequestError
    when it has no system bundle (the CA has nothing to be added to)."""
    targets: list[str] = []
    path: str | None = None
    system = b""
    for candidate in SYSTEM_BUNDLES:
        resolved = resolve_inside(root, candidate)
        if resolved is None or resolved in targets:
            continue
        on_host = os.path.join(root, resolved.lstrip("/"))
        try:
            if not stat.S_ISREG(os.lstat(on_host).st_mode):
                continue
            if path is None:
                with open(on_host, "rb") as bundle:
                    system = bundle.read()
        except OSError:
            continue
        path = path or candidate
        targets.append(resolved)
    if path is None:
        raise WrapRequestError(
            f"inject_secrets: the sandbox's root file system ({root}) has no system trust bundle"
            f" to add the interception CA to (looked for {', '.join(SYSTEM_BUNDLES)})"
        )
    return TrustPlan(
        combined_bundle(system, ca_pem),
        tuple(targets),
        path,
        tuple(trust_environment(path).items()),
    )
