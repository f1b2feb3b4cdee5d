"""Turn `--volume` specs into host directories: named volumes are created, missing binds skipped."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

import attrs

from ._spec import VolumeSpec


@attrs.frozen
class Mount:
    """A host path to show at `target` inside the sandbox."""

    host_path: str
    target: str
    read_only: bool
    named: bool = False


def user_data_dir() -> Path:
    """$XDG_DATA_HOME, else ~/.local/share (the XDG default)."""
    configured = os.environ.get("XDG_DATA_HOME", "")
    if os.path.isabs(configured):
        return Path(configured)
    return Path.home() / ".local" / "share"


def named_volume_dir(name: str) -> Path:
    return user_data_dir() / "trio-sandbox" / "volumes" / name


def resolve_mounts(
    volumes: Iterable[VolumeSpec], *, owner: tuple[int, int] | None = None
) -> list[Mount]:
    """Create named volumes on first use (owned by ``owner`` when given: the sandbox user, who
    must be able to write them) and drop bind volumes whose host path is missing."""
    mounts: list[Mount] = []
    for volume in volumes:
        if volume.named:
            path = named_volume_dir(volume.source)
            if not path.is_dir():
                path.mkdir(mode=0o700, parents=True)
                if owner is not None:
                    os.chown(path, *owner)
            mounts.append(Mount(str(path), volume.target, volume.read_only, named=True))
        elif os.path.exists(volume.source):
            mounts.append(Mount(volume.source, volume.target, volume.read_only))
        else:
            print(
                f"trio-sandbox-warden: note: skipping volume {volume.source}:{volume.target}"
                " (host path does not exist)",
                file=sys.stderr,
                flush=True,
            )
    return mounts
