"""Turn `--volume` specs into host directories: named volumes are created, missing binds skipped,
and each is opened without following a symbolic link the sandbox could have made. (What a
volume's text means is the contract's: ``contract.Volume``.)"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..contract import Volume
from ._errors import WrapRequestError
from ._runtime import is_within

# As many symbolic links as the kernel follows in one path lookup (MAXSYMLINKS).
_MAX_LINKS = 40


@dataclass(frozen=True, slots=True)
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
    volumes: Iterable[Volume], *, owner: tuple[int, int] | None = None
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


def writable_trees(volumes: Iterable[Volume]) -> list[str]:
    """The real paths of every host tree the sandbox may write: its writable volumes."""
    return [
        os.path.realpath(named_volume_dir(v.source) if v.named else v.source)
        for v in volumes
        if not v.read_only
    ]


def open_source(path: str, writable: Sequence[str]) -> int:
    """An O_PATH descriptor of the directory or file at ``path``, looked up one component at a
    time. A symbolic link that lies inside a writable volume (``writable``: their real paths)
    is refused: the sandbox may have made it, so that the next launch binds (and runs as the
    owner of) a host directory of its choosing. Links elsewhere, the host's own, are followed.
    Binding the descriptor (bubblewrap's --bind-fd) leaves no window to swap a component."""
    flags = os.O_PATH | os.O_CLOEXEC
    fd = os.open("/", flags)
    current = "/"
    pending = [part for part in path.split("/") if part not in ("", ".")]
    links = 0
    try:
        while pending:
            name = pending.pop(0)
            if name == "..":
                parent = os.open("..", flags, dir_fd=fd)
                os.close(fd)
                fd, current = parent, os.path.dirname(current)
                continue
            child = os.open(name, flags | os.O_NOFOLLOW, dir_fd=fd)
            if not stat.S_ISLNK(os.fstat(child).st_mode):
                os.close(fd)
                fd, current = child, os.path.join(current, name)
                continue
            os.close(child)
            link = os.path.join(current, name)
            if any(is_within(current, tree) for tree in writable):
                raise WrapRequestError(
                    f"volume {path}: {link} is a symbolic link inside a writable volume (the"
                    " sandbox may have made it): refusing to follow it; give the real path"
                )
            links += 1
            if links > _MAX_LINKS:
                raise WrapRequestError(f"volume {path}: too many levels of symbolic links")
            target = os.readlink(name, dir_fd=fd)
            if target.startswith("/"):
                os.close(fd)
                fd, current = os.open("/", flags), "/"
            pending[:0] = [part for part in target.split("/") if part not in ("", ".")]
    except OSError as exc:
        os.close(fd)
        raise OSError(exc.errno, f"cannot open volume {path}: {exc.strerror}") from None
    except BaseException:
        os.close(fd)
        raise
    return fd
