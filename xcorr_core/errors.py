"""Exceptions raised by xcorr. Every error a user can cause is one of these.

They subclass the built-in exception a caller would naturally catch
(`ValueError`, `LookupError`, ...), so generic handlers keep working.
"""
from __future__ import annotations

__all__ = [
    "XcorrError",
    "ConfigError",
    "UnknownComponentError",
    "RegistrationError",
    "InputError",
    "IndexFileError",
    "StorageError",
    "LayerNotFoundError",
    "PluginLoadError",
    "ComponentOutputError",
    "ModelForwardError",
]


class XcorrError(Exception):
    """Base class of every xcorr error."""


class ConfigError(XcorrError, ValueError):
    """A component or pipeline config is invalid; the message names the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownComponentError(XcorrError, LookupError):
    """No component of that kind and name is registered; the message lists those that are."""

    def __init__(self, kind: str, name: str, available: list[str]) -> None:
        names = ", ".join(sorted(available)) or "(none installed)"
        super().__init__(f"unknown {kind} {name!r}; available {kind}s: {names}")
        self.kind = kind
        self.name = name
        self.available = sorted(available)


class InputError(XcorrError, ValueError):
    """A tensor or data argument has the wrong shape, dtype, device or values."""


class IndexFileError(XcorrError, OSError):
    """A saved index or feature store is missing, corrupt or does not match."""


class StorageError(XcorrError, OSError):
    """A file or folder could not be written: the disk is full, or the file system is read-only or
    not writable by this user. The message names the path and what to do; nothing half-written is
    left behind."""


class LayerNotFoundError(XcorrError, KeyError):
    """A layer name does not exist in the model; the message lists valid names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class PluginLoadError(XcorrError, ImportError):
    """A plugin failed to import or register (reported, never fatal for the others)."""


class RegistrationError(XcorrError, TypeError, ValueError):
    """A plugin's ``register_*`` hook broke the registration contract: not a component class, a
    missing ``name`` / ``summary`` / ``Config``, a name another plugin took, a loader or demo
    section that is not callable. The plugin is recorded as failed (``xcorr plugins``), never
    half-registered."""


class ComponentOutputError(XcorrError, TypeError):
    """A plugin's component returned something that breaks its contract (e.g. a re-ranker's ``order``
    that is not a permutation of its candidates); the message names the component and its plugin."""


class ModelForwardError(InputError, RuntimeError):
    """The model raised a `RuntimeError` on the given inputs (usually a shape or dtype they cannot
    take); the message gives the inputs' shape and dtype and the model's own message. Also a
    `RuntimeError`, so handlers written for torch's errors keep working."""
