"""Atomic file writes: write to a temporary file beside the target, then rename.

A reader never sees a half-written file, and a crash leaves the old file intact. A full disk or a
read-only file system is a `StorageError` naming the path (`storage_error`), whatever the writer
turned the operating system's error into (torch.save reports a full disk as "unexpected pos"), and
the temp file is removed. JSON descriptions
(a store's store.json, a gallery's gallery.json) carry a checksum of their own (`sealed`,
`check_seal`), so an edited field is an error rather than a wrong answer.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .errors import IndexFileError, StorageError

__all__ = ["atomic_write", "make_dir", "reserve", "storage_error", "free_bytes", "sealed", "check_seal"]

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DENIED = {errno.EROFS, errno.EACCES, errno.EPERM}

_SEAL = "self_sha256"


def _digest(info: dict[str, Any]) -> str:
    body = {k: v for k, v in info.items() if k != _SEAL}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sealed(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with a SHA-256 of its own content (key ``self_sha256``), for `check_seal` to verify."""
    return {**info, _SEAL: _digest(info)}


def check_seal(info: dict[str, Any], path: str | os.PathLike[str]) -> dict[str, Any]:
    """``info`` if its own checksum matches (descriptions written before seals existed have none and
    pass); `IndexFileError` for an edited or corrupted description."""
    if _SEAL in info and info[_SEAL] != _digest(info):
        raise IndexFileError(f"{path} was edited or is corrupt: its own checksum (self_sha256) does not match its content; "
                             "rebuild it rather than editing it")
    return info


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes free on the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def storage_error(exc: BaseException, path: str | os.PathLike[str]) -> StorageError | None:
    """A `StorageError` naming ``path`` when ``exc`` is an OSError of a full disk (ENOSPC, EDQUOT,
    EFBIG) or of an unwritable place (EROFS, EACCES, EPERM); None for any other error."""
    if isinstance(exc, StorageError):
        return exc
    if not isinstance(exc, OSError):
        return None
    if exc.errno in _FULL:
        return StorageError(f"cannot write {path}: no space left on the device ({free_bytes(path):,} bytes free); "
                            "free some space or write to another folder")
    if exc.errno in _DENIED:
        return StorageError(f"cannot write {path}: {exc.strerror or 'permission denied'} (a read-only file system or a folder "
                            "this user cannot write); choose a writable folder")
    return None


def make_dir(path: str | os.PathLike[str]) -> Path:
    """Create folder ``path`` (and parents) if needed; `StorageError` if the place is full or unwritable."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise (storage_error(exc, path) or exc) from exc
    return path


def reserve(path: str | os.PathLike[str], nbytes: int) -> None:
    """Allocate ``nbytes`` of disk blocks for existing file ``path`` now (posix_fallocate), so that
    writing through a memory map later cannot die of SIGBUS on a full disk; `StorageError` if the
    space is not there. File systems without fallocate are left as they are."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return
        raise (storage_error(exc, path) or exc) from exc
    finally:
        os.close(fd)


class _Recording:
    """A binary file that remembers the OSError its last failed write or flush raised: writers such as
    torch.save replace it with their own error, which no longer says why."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f, self.error = f, None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fileobj)`` on a temp file in ``path``'s folder, fsync, and rename onto ``path``.

    Raises:
        StorageError: the disk filled up or the folder is not writable (the temp file is removed).
    """
    path = Path(path)
    make_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise (storage_error(exc, path) or exc) from exc
    umask = os.umask(0)
    os.umask(umask)
    recorder: _Recording | None = None
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would surprise users of a shared index
        with os.fdopen(fd, "wb") as f:
            recorder = _Recording(f)
            write(recorder)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        err = storage_error(exc, path) or (storage_error(recorder.error, path) if recorder and recorder.error else None)
        if err is not None and err is not exc:
            raise err from exc
        raise
    return path
