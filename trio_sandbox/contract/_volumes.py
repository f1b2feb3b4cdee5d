"""Volumes as the contract writes them: ``HOST:CONTAINER[:ro]``, ``NAME:CONTAINER[:ro]``.

The host part is a path (a bind volume: ``~/`` is the user's home, a relative path is taken
from the working directory) or, with no ``/`` and not starting with ``.``, ``/`` or ``~``, the
name of a volume kept by the warden. The container part is absolute and covers neither the
root, /proc, /dev nor the tool server's runtime (RUNTIME_ROOT). Our warden's extension for its
Kubernetes back end: ``pvc:CLAIM:CONTAINER[:ro]``, a PersistentVolumeClaim (the back end checks
the claim's name and the targets a Pod refuses).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Final

from ._errors import VolumeError
from ._names import RUNTIME_ROOT

_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*", re.ASCII)
# Targets a volume may never cover: the sandbox's own runtime and kernel interfaces.
RESERVED_TARGETS: Final = (RUNTIME_ROOT, "/proc", "/dev")
# The prefix of a Kubernetes claim volume.
CLAIM_VOLUME_PREFIX: Final = "pvc:"


def is_named_volume(source: str) -> bool:
    """The contract's rule: no ``/`` and not starting with ``.``, ``/`` or ``~``."""
    return "/" not in source and not source.startswith((".", "/", "~"))


def is_claim_volume(text: str) -> bool:
    return text.startswith(CLAIM_VOLUME_PREFIX)


def _is_within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


@dataclass(frozen=True)
class Volume:
    """One volume: ``source`` is a host path (bind), a volume name (named) or a claim's name
    (``claim``); ``target`` is the normalised absolute path inside the sandbox."""

    source: str
    target: str
    read_only: bool = False
    claim: bool = False

    @property
    def named(self) -> bool:
        """A volume the warden keeps (not a host path, not a claim)."""
        return not self.claim and is_named_volume(self.source)

    @classmethod
    def parse(cls, text: str, where: str = "--volume") -> Volume:
        """The volume ``text`` says, its host part as written; VolumeError naming ``where``."""
        claim = is_claim_volume(text)
        parts = text.removeprefix(CLAIM_VOLUME_PREFIX).split(":") if claim else text.split(":")
        read_only = False
        if len(parts) == 3 and parts[2] in ("ro", "rw"):
            read_only = parts[2] == "ro"
            parts = parts[:2]
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise VolumeError(where, text, "expected HOST:CONTAINER[:ro]")
        source, target = parts
        if not target.startswith("/"):
            raise VolumeError(where, text, "the container path must be absolute")
        target = os.path.normpath(target)
        if target == "/" or any(_is_within(target, reserved) for reserved in RESERVED_TARGETS):
            raise VolumeError(
                where,
                text,
                f"{target} is reserved in the sandbox (the root, /proc, /dev and {RUNTIME_ROOT},"
                " where the tool server's runtime lives)",
            )
        if (claim or is_named_volume(source)) and not _VOLUME_NAME.fullmatch(source):
            raise VolumeError(where, text, f"bad volume name {source!r}")
        return cls(source, target, read_only, claim)

    def format(self) -> str:
        """The canonical text, which :meth:`parse` reads back as the same volume."""
        prefix = CLAIM_VOLUME_PREFIX if self.claim else ""
        return f"{prefix}{self.source}:{self.target}" + (":ro" if self.read_only else "")

    def resolved(self, home: str | None = None) -> Volume:
        """The volume with a bind source made absolute: ``~`` is ``home`` (by default the
        user's), a relative path is taken from the working directory."""
        if self.named or self.claim:
            return self
        source = self.source
        if source == "~" or source.startswith("~/"):
            source = (home if home is not None else os.path.expanduser("~")) + source[1:]
        return Volume(os.path.abspath(source), self.target, self.read_only)
