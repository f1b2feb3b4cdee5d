"""The audit log: JSON Lines, one record per event, written whole as it happens.

Each line is one ``os.write`` on a descriptor opened ``O_APPEND``, so two processes appending to
one file never interleave inside a line, and a line is on its way to the disk before the call
that made it returns (no buffer to lose at a crash). The file is created 0600 and must stay the
running user's own: a log another user could read (or pre-create, to read or forge it) is
refused, never used. Rotation is by size, built in (``max_bytes``, ``backups`` kept as
``FILE.1`` ... ``FILE.N``); ``max_bytes = 0`` never rotates, for logrotate's ``copytruncate``.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs

from ._errors import AuditLogError
from ._records import Record, ellipsized

logger = logging.getLogger("trio_sandbox.observe")

DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
DEFAULT_BACKUPS: Final = 5
# A record longer than this keeps a preview of its arguments instead of all of them (a file
# written through a tool can be megabytes; the log is for seeing what happened).
MAX_RECORD_BYTES: Final = 64 * 1024
ARGUMENTS_PREVIEW_CHARS: Final = 2048
# In a record still longer than that, a text field longer than this is cut (ending in "…").
TEXT_PREVIEW_CHARS: Final = 1024
STDOUT: Final = "-"

_OPEN_FLAGS: Final = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_private(path: str) -> tuple[int, int]:
    """``path`` opened to append, 0600 and ours; returns the descriptor and the file's size."""
    try:
        fd = os.open(path, _OPEN_FLAGS, 0o600)
    except OSError as error:
        raise AuditLogError(f"audit log {path}: cannot open it: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AuditLogError(f"audit log {path}: not a regular file")
        if info.st_nlink != 1:
            raise AuditLogError(f"audit log {path}: it has other names (hard links)")
        if info.st_uid != os.geteuid():
            raise AuditLogError(
                f"audit log {path}: owned by uid {info.st_uid}, not by this user (uid"
                f" {os.geteuid()}): another user could read or forge it"
            )
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o600)  # ours, made with a wider mode: the log holds who did what
        return fd, info.st_size
    except BaseException:
        os.close(fd)
        raise


# json.dumps makes its encoder, and the C encoder inside it, on every call; a record is written
# for every call the proxy serves, so the C encoder is made once, where the interpreter has one.
# No check for a value that contains itself (records are trees; one that recursed would raise
# RecursionError, a lost record). ASCII only: a raw U+2028 or U+0085 is a line break to some
# readers (Python's splitlines).
def _c_encoder() -> Callable[[object, int], Sequence[str]] | None:
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:  # its arguments are CPython's own, not a public interface
        encoder: Callable[[object, int], Sequence[str]] = make(
            None, str, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
        )
    except Exception:
        return None
    return encoder


_C_LINE: Final = _c_encoder()


def _dumps(value: object) -> str:
    if _C_LINE is None:
        return json.dumps(value, separators=(",", ":"), default=str)
    return "".join(_C_LINE(value, 0))


def _encode(record: Record) -> bytes:
    fields = record.to_json()
    line = _dumps(fields)
    if len(line) > MAX_RECORD_BYTES and "arguments" in fields:
        text = _dumps(fields["arguments"])
        fields["arguments"] = {
            "truncated": True,
            "size": len(text.encode()),
            "preview": text[:ARGUMENTS_PREVIEW_CHARS],
        }
        line = _dumps(fields)
    if len(line) > MAX_RECORD_BYTES:
        # A tool's name, a URI or an error's message is the client's or an upstream's to
        # choose, up to a message's size: whole, a few such records would rotate the log's
        # history out.
        fields = {
            key: ellipsized(value, TEXT_PREVIEW_CHARS) if isinstance(value, str) else value
            for key, value in fields.items()
        }
        error = fields.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            fields["error"] = {**error, "message": ellipsized(error["message"], TEXT_PREVIEW_CHARS)}
        line = _dumps(fields)
    return line.encode("ascii") + b"\n"


@attrs.define(eq=False)
class AuditLog:
    """An open audit log (a sink of :class:`~._observer.Observer`); :func:`open_audit_log`."""

    path: str | None  # None: standard output
    max_bytes: int = DEFAULT_MAX_BYTES
    backups: int = DEFAULT_BACKUPS
    _fd: int = -1
    _size: int = 0
    _last_failure: str | None = None

    def record(self, record: Record) -> None:
        """Append ``record``; an error (a full disk, a rotation that failed) loses the record and
        says so, once per kind of error: the log goes on with the next."""
        if self._fd < 0:
            return  # closed: the sandbox is stopping, records after the last are dropped
        data = _encode(record)
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as error:
            self._failed(f"a record was lost: {error.strerror or error}")
            return
        self._size += len(data)
        if self.path is not None and self.max_bytes and self._size >= self.max_bytes:
            try:
                self._rotate()
            except (OSError, AuditLogError) as error:
                # The old file stays open: records go on there until a rotation succeeds.
                self._failed(f"it could not be rotated, writing on: {error}")

    def _failed(self, what: str) -> None:
        if what != self._last_failure:
            logger.error("audit log %s: %s", self.path or "(standard output)", what)
            self._last_failure = what

    def placeholder_made(self, rule: str) -> None:
        pass  # counted by the metrics; the log records the calls, not each redaction

    def output_shortened(self, upstream: str | None) -> None:
        pass

    def _rotate(self) -> None:
        """Rename FILE to FILE.1 (the older ones up by one), then write to a fresh FILE: the
        current descriptor is closed only once the new one is open."""
        assert self.path is not None
        for index in range(self.backups - 1, 0, -1):
            older = f"{self.path}.{index}"
            if os.path.lexists(older):
                os.replace(older, f"{self.path}.{index + 1}")
        if self.backups:
            os.replace(self.path, f"{self.path}.1")
        else:
            os.unlink(self.path)
        fd, size = _open_private(self.path)
        os.close(self._fd)
        self._fd, self._size = fd, size
        self._last_failure = None

    def close(self) -> None:
        if self._fd >= 0 and self.path is not None:
            os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def open_audit_log(
    target: str, *, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
) -> AuditLog:
    """The audit log at ``target`` (a path, or ``-`` for standard output), opened now so that a
    bad path fails before the sandbox starts. Raises :class:`AuditLogError`."""
    if max_bytes < 0 or backups < 0:
        raise AuditLogError("audit log: max_bytes and backups must be 0 or more")
    if target == STDOUT:
        return AuditLog(None, max_bytes, backups, fd=1)
    path = os.path.abspath(target)
    fd, size = _open_private(path)
    return AuditLog(path, max_bytes, backups, fd=fd, size=size)
