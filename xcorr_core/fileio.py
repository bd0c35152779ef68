"""Atomic file writes: write to a temporary file beside the target, then rename.

A reader never sees a half-written file, and a crash leaves the old file intact. JSON descriptions
(a store's store.json, a gallery's gallery.json) carry a checksum of their own (`sealed`,
`check_seal`), so an edited field is an error rather than a wrong answer.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .errors import IndexFileError

__all__ = ["atomic_write", "sealed", "check_seal"]

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


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fileobj)`` on a temp file in ``path``'s folder, fsync, and rename onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would surprise users of a shared index
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
