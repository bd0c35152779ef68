"""On-disk cache of generated synthetic data sets (SynthBirds, SynthHerd).

Generating a data set renders every image in Python (~30 s for the demo's); the result depends only
on the generation parameters, the generator's source code and torch. A cache file is keyed by all
three, written atomically, carries a SHA-256 of its content, and is regenerated when it is missing,
corrupt or from other code. Where: ``$XCORR_DATA_CACHE`` (``off`` disables it), else
``$XDG_CACHE_HOME/xcorr/data`` (``~/.cache/xcorr/data``). May touch only files under that folder.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch

from ..fileio import atomic_write

__all__ = ["cache_dir", "cached", "cache_key"]

_FORMAT = "xcorr.DataCache/1"
_log = logging.getLogger(__name__)
Payload = dict[str, torch.Tensor | str]


def cache_dir() -> Path | None:
    """The cache folder, or None when ``XCORR_DATA_CACHE=off``."""
    env = os.environ.get("XCORR_DATA_CACHE", "").strip()
    if env.lower() in ("off", "0", "no", "false"):
        return None
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "xcorr" / "data"


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """SHA-256 of the generators' sources: any change to how images are drawn invalidates the cache."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.glob("*.py")):
        if f.name not in ("cache.py", "real.py", "__init__.py"):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def cache_key(name: str, params: dict[str, object]) -> str:
    """Key of a data set: its name, every generation parameter, the generators' code and torch's version."""
    blob = json.dumps({"name": name, "params": params, "code": _code_digest(), "torch": torch.__version__.split("+")[0]},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _digest(payload: Payload) -> str:
    h = hashlib.sha256()
    for k in sorted(payload):
        v = payload[k]
        h.update(k.encode() + b"\0")
        if isinstance(v, torch.Tensor):
            h.update(f"{v.dtype}{list(v.shape)}".encode())
            h.update(v.contiguous().view(torch.uint8).numpy().tobytes() if v.numel() else b"")
        else:
            h.update(b"s" + v.encode())
    return h.hexdigest()


def _read(path: Path, key: str) -> Payload | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not (isinstance(blob, dict) and blob.get("format") == _FORMAT and blob.get("key") == key):
            raise ValueError("not this data set's cache file")
        payload = blob["payload"]
        if _digest(payload) != blob["sha256"]:
            raise ValueError("content does not match its checksum")
        return payload
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - any unreadable cache file is regenerated, never trusted
        _log.warning("data cache %s is unusable (%s: %s); regenerating", path, type(exc).__name__, exc)
        return None


def cached(name: str, params: dict[str, object], make: Callable[[], Payload]) -> Payload:
    """``make()``'s payload (tensors and strings by name), from the cache when a valid file is there.

    A failure to write the cache (read-only home, full disk) is logged and the fresh payload returned."""
    folder = cache_dir()
    if folder is None:
        return make()
    key = cache_key(name, params)
    path = folder / f"{name}-{key}.pt"
    payload = _read(path, key)
    if payload is not None:
        return payload
    payload = make()
    blob = {"format": _FORMAT, "key": key, "name": name, "params": params, "sha256": _digest(payload), "payload": payload}
    try:
        atomic_write(path, lambda f: torch.save(blob, f))
    except OSError as exc:
        _log.warning("could not write the data cache %s (%s)", path, exc)
    return payload
