"""The token store of people and the proxy: one 0600 file per upstream in the user's state
directory (``$XDG_STATE_HOME/trio-sandbox/oauth/NAME.json``).

Everything is done relative to the directory's own descriptor, opened without following a
symbolic link, so a path swapped underneath is not followed. A file is written whole to a fresh
temporary name (O_EXCL, O_NOFOLLOW, 0600) and renamed over the old one: a reader sees the old
tokens or the new ones, never half. A file that is a symbolic link, not a regular file, owned by
someone else, hard linked or readable by others is refused, as is a directory that is a link or
someone else's: whoever could plant those could read or replace the tokens. Writers take an
exclusive ``flock`` on the directory's ``.lock`` so that a login in the CLI and a proxy
refreshing in another process never interleave a read-modify-write (:meth:`FileTokenStore.update`);
readers take none (the rename makes every read whole), so a lock held by anyone never stalls a
reader, and a file is parsed again only when its (inode, mtime, size) changed. A writer waits for
the lock at most ``lock_wait`` seconds (trying without blocking), then raises
:class:`TokenStoreBusy`: the proxy, which must not stall its event loop, waits not at all.

Errors name the file and what is wrong with it, never its content (tokens).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import attrs

from ..program import state_dir
from ._errors import TokenStoreError
from ._tokens import Tokens

# An upstream name as a file name: no separators, no dot files, no "..", bounded.
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SUFFIX: Final = ".json"
_LOCK: Final = ".lock"
# A token file is a few kilobytes; anything much larger is not ours.
_MAX_BYTES: Final = 1 << 20


def default_token_dir() -> Path:
    """``$XDG_STATE_HOME/trio-sandbox/oauth`` (else ``~/.local/state/trio-sandbox/oauth``)."""
    return state_dir() / "oauth"


class TokenStoreBusy(TokenStoreError):
    """Another process holds the store's lock longer than this writer may wait."""


def check_store_name(name: str) -> str:
    """``name`` if it can name a token file; TokenStoreError otherwise."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise TokenStoreError(
            f"{name!r} cannot name a token file: use letters, digits, '.', '_' and '-' (at most"
            " 128, not starting with '.' or '-', no '..')"
        )
    return name


@attrs.define(eq=False)
class FileTokenStore:
    """:class:`TokenStore` in files, one per upstream; see the module's docstring."""

    directory: Path = attrs.field(factory=default_token_dir, converter=Path)
    # How long a writer waits for another process's lock (0: one try, never blocking).
    lock_wait: float = attrs.field(default=10.0, kw_only=True)
    # name -> ((inode, mtime_ns, size), tokens): a file unchanged is not parsed again.
    _cache: dict[str, tuple[tuple[int, int, int], Tokens | None]] = attrs.field(
        factory=dict, init=False, repr=False
    )

    def load(self, name: str) -> Tokens | None:
        with self._opened_directory(create=False) as fd:
            if fd is None:
                return None
            return self._read(fd, name)

    def replace(self, name: str, tokens: Tokens, expected: Tokens | None) -> Tokens | None:
        def unless_replaced(current: Tokens | None) -> Tokens | None:
            return current if current is not None and current != expected else tokens

        return self.update(name, unless_replaced)

    def save(self, name: str, tokens: Tokens) -> None:
        with self._opened_directory(create=True) as fd:
            assert fd is not None
            with self._locked(fd, fcntl.LOCK_EX):
                self._check_existing(fd, name)
                self._write(fd, name, tokens)

    def delete(self, name: str) -> bool:
        with self._opened_directory(create=False) as fd:
            if fd is None:
                return False
            with self._locked(fd, fcntl.LOCK_EX):
                if not self._check_existing(fd, name):
                    return False
                os.unlink(self._file_name(name), dir_fd=fd)
                os.fsync(fd)
                return True

    def update(self, name: str, change: Callable[[Tokens | None], Tokens | None]) -> Tokens | None:
        """Read, ``change`` and write back under one exclusive lock (no other process's write
        comes in between); ``change`` returning None deletes the entry. Returns what is stored."""
        with self._opened_directory(create=True) as fd:
            assert fd is not None
            with self._locked(fd, fcntl.LOCK_EX):
                new = change(self._read(fd, name))
                if new is None:
                    if self._check_existing(fd, name):
                        os.unlink(self._file_name(name), dir_fd=fd)
                else:
                    self._check_existing(fd, name)
                    self._write(fd, name, new)
                return new

    def names(self) -> list[str]:
        """The upstream names that have a token file, sorted."""
        with self._opened_directory(create=False) as fd:
            if fd is None:
                return []
            return sorted(
                entry[: -len(_SUFFIX)]
                for entry in os.listdir(fd)
                if entry.endswith(_SUFFIX) and _NAME.fullmatch(entry[: -len(_SUFFIX)])
            )

    def path_of(self, name: str) -> Path:
        return self.directory / self._file_name(name)

    # --- the directory --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _opened_directory(self, *, create: bool) -> Iterator[int | None]:
        if create:
            if not os.path.lexists(self.directory):
                self._check_whose_tree()
            # The state directory's parents are the user's; ours is private from the start.
            self.directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with contextlib.suppress(FileExistsError):
                self.directory.mkdir(mode=0o700)
        try:
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except FileNotFoundError:
            if create:
                raise
            yield None
            return
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise TokenStoreError(
                    f"{self.directory}: refused: not a directory (a symbolic link?)"
                ) from None
            raise TokenStoreError(f"{self.directory}: cannot open: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if info.st_uid != os.geteuid():
                raise TokenStoreError(
                    f"{self.directory}: refused: owned by uid {info.st_uid}, not by this user"
                    f" (uid {os.geteuid()})"
                )
            if stat.S_IMODE(info.st_mode) & 0o077:
                # Ours: narrowing it is safe, and keeps the token files' names private.
                os.fchmod(fd, 0o700)
            yield fd
        finally:
            os.close(fd)

    def _check_whose_tree(self) -> None:
        """The directories about to be made go into this user's tree (or root's): root with
        another user's XDG_STATE_HOME (``sudo -E``) would leave directories of root's there,
        which the user could then not use."""
        existing = self.directory
        while not os.path.lexists(existing) and existing != existing.parent:
            existing = existing.parent
        try:
            owner = os.stat(existing).st_uid
        except OSError as exc:
            raise TokenStoreError(f"{existing}: cannot look at it: {exc.strerror}") from None
        if owner not in (os.geteuid(), 0):
            raise TokenStoreError(
                f"{self.directory}: refused: it would be made in {existing}, owned by uid"
                f" {owner}, not by this user (uid {os.geteuid()}); set XDG_STATE_HOME to a"
                " directory of this user's"
            )

    @contextlib.contextmanager
    def _locked(self, directory_fd: int, how: int) -> Iterator[None]:
        try:
            fd = os.open(
                _LOCK,
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=directory_fd,
            )
        except OSError as exc:
            raise TokenStoreError(
                f"{self.directory / _LOCK}: cannot open the lock: {exc.strerror}"
            ) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                raise TokenStoreError(
                    f"{self.directory / _LOCK}: refused: not a regular file of this user"
                )
            deadline = time.monotonic() + self.lock_wait
            while True:
                try:
                    fcntl.flock(fd, how | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TokenStoreBusy(
                            f"{self.directory / _LOCK}: locked by another process"
                        ) from None
                    time.sleep(0.02)
            yield
        finally:
            os.close(fd)  # releases the lock

    # --- the files ------------------------------------------------------------------------------

    def _file_name(self, name: str) -> str:
        return check_store_name(name) + _SUFFIX

    def _refusal(self, name: str, info: os.stat_result) -> str | None:
        """Why the file ``name`` (as ``info`` says) is not one to trust, or None."""
        if stat.S_ISLNK(info.st_mode):
            return "it is a symbolic link"
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        if info.st_uid != os.geteuid():
            return f"owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})"
        if info.st_nlink != 1:
            return f"it has {info.st_nlink} hard links"
        if stat.S_IMODE(info.st_mode) & 0o077:
            return f"mode {stat.S_IMODE(info.st_mode):04o}: others may read it (must be 0600)"
        return None

    def _check_existing(self, fd: int, name: str) -> bool:
        """Whether the file exists; TokenStoreError when it is one we must not touch."""
        try:
            info = os.stat(self._file_name(name), dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        why = self._refusal(name, info)
        if why is not None:
            raise TokenStoreError(f"{self.path_of(name)}: refused: {why}")
        return True

    def _read(self, directory_fd: int, name: str) -> Tokens | None:
        path = self.path_of(name)
        # Looked at before opening (a clear refusal rather than EACCES), and again once open.
        if not self._check_existing(directory_fd, name):
            return None
        try:
            fd = os.open(
                self._file_name(name),
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY,
                dir_fd=directory_fd,
            )
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise TokenStoreError(f"{path}: refused: it is a symbolic link") from None
            raise TokenStoreError(f"{path}: cannot open: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            why = self._refusal(name, info)
            if why is not None:
                raise TokenStoreError(f"{path}: refused: {why}")
            key = (info.st_ino, info.st_mtime_ns, info.st_size)
            cached = self._cache.get(name)
            if cached is not None and cached[0] == key:
                return cached[1]
            data = os.read(fd, _MAX_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > _MAX_BYTES:
            raise TokenStoreError(
                f"{path}: not a token file: larger than {_MAX_BYTES} bytes; remove it and log in"
                f" again (trio-sandbox auth login {name})"
            )
        try:
            tokens = Tokens.from_json(json.loads(data))
            self._cache[name] = (key, tokens)
            return tokens
        except json.JSONDecodeError as exc:
            # The decoder's own message only (never the text around it: it may be a token).
            raise TokenStoreError(
                f"{path}: not a token file: invalid JSON at line {exc.lineno} column {exc.colno};"
                f" remove it and log in again (trio-sandbox auth login {name})"
            ) from None
        except (UnicodeDecodeError, ValueError) as exc:
            reason = str(exc) if not isinstance(exc, UnicodeDecodeError) else "not UTF-8"
            raise TokenStoreError(
                f"{path}: not a token file: {reason}; remove it and log in again"
                f" (trio-sandbox auth login {name})"
            ) from None

    def _write(self, directory_fd: int, name: str, tokens: Tokens) -> None:
        body = json.dumps(tokens.to_json(), indent=1).encode()
        final = self._file_name(name)
        temporary = f".{final}.{secrets.token_hex(8)}.tmp"
        fd = os.open(
            temporary,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=directory_fd,
        )
        try:
            try:
                os.fchmod(fd, 0o600)  # whatever the umask
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temporary, final, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=directory_fd)
            raise
        os.fsync(directory_fd)
