"""Plugin loading and the component registry.

Plugins are found through the entry-point group ``xcorr``; each is imported and
its ``register_*`` hooks (components, models, demo sections) are called once, one plugin at a
time, through one helper with one policy: a plugin that fails to import or whose hook raises or
registers something invalid is recorded with its error (``xcorr plugins`` shows it) and
contributes nothing; the others still load.
Set ``XCORR_PLUGINS`` to a comma-separated list of entry-point names to load
only those (empty string: none but the core's built-ins).

Depends on pluggy, pydantic and the core's own modules; never on a plugin.
"""
from __future__ import annotations

import difflib
import importlib.metadata as md
import os
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError

from . import hookspecs
from .components import KIND_METHOD, KINDS, ComponentInfo, PluginInfo
from .errors import ConfigError, InputError, RegistrationError, UnknownComponentError

__all__ = ["components", "create", "register_plugin", "plugins", "get_class", "reload_plugins", "plugin_manager", "models"]

ENTRY_POINT_GROUP = "xcorr"
ENV_VAR = "XCORR_PLUGINS"
_HOOK_OF_KIND = {k: f"register_{k}s" for k in KINDS}


@dataclass
class _Entry:
    cls: type
    info: ComponentInfo


@dataclass
class _Registry:
    pm: pluggy.PluginManager
    entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    models: dict[str, tuple[str, Any, str]] = field(default_factory=dict)  # name -> (plugin, load, summary)
    sections: list[tuple[str, str, Any]] = field(default_factory=list)  # (plugin, title, run)


_lock = threading.RLock()
_state: _Registry | None = None


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _validate_class(kind: str, cls: Any) -> None:
    if not isinstance(cls, type):
        raise RegistrationError(f"register() takes a class, got {cls!r}")
    for attr in ("name", "summary"):
        if not isinstance(getattr(cls, attr, None), str) or not getattr(cls, attr):
            raise RegistrationError(f"{cls.__qualname__} needs a non-empty str class attribute {attr!r}")
    cfg = getattr(cls, "Config", None)
    if not (isinstance(cfg, type) and issubclass(cfg, BaseModel)):
        raise RegistrationError(f"{cls.__qualname__} needs a nested pydantic model 'Config'")
    method = KIND_METHOD[kind]
    if not callable(getattr(cls, method, None)):
        raise RegistrationError(f"{cls.__qualname__} is registered as a {kind} but has no {method}() method")
    _check_defaults(cls.__qualname__, cfg)


def _check_defaults(owner: str, cfg: type[BaseModel]) -> None:
    """Pydantic does not validate defaults: a default that breaks its own field's constraint would only
    fail when someone passes the same value explicitly. Validate each default as an input here."""
    for fname, f in cfg.model_fields.items():
        if f.is_required() or (f.validation_alias is not None and not isinstance(f.validation_alias, str)):
            continue
        key = f.validation_alias if isinstance(f.validation_alias, str) else (f.alias or fname)
        value = f.get_default(call_default_factory=True)
        try:
            cfg.model_validate({key: value})
        except ValidationError as exc:
            errs = [e for e in exc.errors() if tuple(e["loc"][:1]) == (key,)]
            if errs:
                raise RegistrationError(f"{owner}.Config.{fname}: its default {value!r} breaks its own constraint ({errs[0]['msg']})") from None


def _hook_names() -> set[str]:
    return {n for n in dir(hookspecs) if n.startswith("register_") and hasattr(getattr(hookspecs, n), f"{hookspecs.PROJECT}_spec")}


def _check_hook_names(plugin: Any, name: str) -> None:
    """Unknown hook names are errors (pluggy would accept them silently); a function that has a hook's
    name but no ``@hookimpl`` is a warning (pluggy ignores it)."""
    known = _hook_names()
    for attr in dir(plugin):
        obj = getattr(plugin, attr, None)
        marked = callable(obj) and hasattr(obj, f"{hookspecs.PROJECT}_impl")
        if marked and attr not in known:
            close = difflib.get_close_matches(attr, sorted(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise RegistrationError(f"{attr!r} is not an xcorr hook.{hint} Hooks: {', '.join(sorted(known))}")
        if not marked and callable(obj) and attr in known:
            warnings.warn(f"plugin {name!r}: {attr}() is not marked @xcorr_core.hookimpl, so it is never called", stacklevel=4)


def _register_plugin_obj(state: _Registry, plugin: Any, name: str, version: str) -> PluginInfo:
    """Register `plugin` with pluggy and collect its components, isolating failures."""
    info = PluginInfo(name=name, version=version)
    state.plugins[name] = info
    try:
        _check_hook_names(plugin, name)
        state.pm.register(plugin, name=name)
    except Exception as exc:  # bad hookimpl signature, duplicate name, unknown hook ...
        info.error = f"{type(exc).__name__}: {exc}"
        return info
    added: list[tuple[str, str]] = []
    models: dict[str, tuple[str, Any, str]] = {}
    sections: list[tuple[str, str, Any]] = []

    def collect(hook: str, register: Any) -> None:
        """The one way hook results are gathered: this plugin's implementation of ``hook``, if any."""
        for impl in getattr(state.pm.hook, hook).get_hookimpls():
            if impl.plugin_name == name:
                impl.function(register=register)

    def component(kind: str) -> Any:
        def register(cls: type) -> None:
            _validate_class(kind, cls)
            key = (kind, cls.name)
            if key in state.entries:
                raise RegistrationError(f"{kind} {cls.name!r} is already registered by plugin {state.entries[key].info.plugin!r}")
            cinfo = ComponentInfo(kind=kind, name=cls.name, plugin=name, version=version, summary=cls.summary,
                                  config_schema=cls.Config.model_json_schema())
            state.entries[key] = _Entry(cls=cls, info=cinfo)
            added.append(key)
            info.components.append(cinfo)
        return register

    def model(model_name: str, load: Any, summary: str = "") -> None:
        if not callable(load):
            raise RegistrationError(f"register_models: the loader of {model_name!r} is not callable")
        if str(model_name) in state.models or str(model_name) in models:
            other = state.models.get(str(model_name), (name,))[0]
            raise RegistrationError(f"model {model_name!r} is already named by plugin {other!r}")
        models[str(model_name)] = (name, load, str(summary))

    def section(title: str, run: Any) -> None:
        if not callable(run):
            raise RegistrationError(f"register_demo_sections: the section {title!r} is not callable")
        sections.append((name, str(title), run))

    try:
        for kind in KINDS:
            collect(_HOOK_OF_KIND[kind], component(kind))
        collect("register_models", model)
        collect("register_demo_sections", section)
    except Exception as exc:
        for key in added:  # all or nothing per plugin
            state.entries.pop(key, None)
        info.components.clear()
        info.error = f"{type(exc).__name__}: {exc}"
        state.pm.unregister(name=name)
        return info
    state.models.update(models)
    state.sections.extend(sections)
    if not info.components and not state.pm.get_hookcallers(plugin):
        warnings.warn(f"plugin {name!r} implements no xcorr hook: it registers nothing (missing @xcorr_core.hookimpl?)", stacklevel=3)
    return info


def _wanted(names: list[str]) -> set[str] | None:
    raw = os.environ.get(ENV_VAR)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _load() -> _Registry:
    from . import __version__, builtins

    state = _Registry(pm=_new_manager())
    _register_plugin_obj(state, builtins, "xcorr_core", __version__)
    eps = md.entry_points(group=ENTRY_POINT_GROUP)
    wanted = _wanted([ep.name for ep in eps])
    installed = sorted(ep.name for ep in eps)
    unknown = sorted((wanted or set()) - set(installed))
    if unknown:
        warnings.warn(f"{ENV_VAR} names {', '.join(map(repr, unknown))}, which {'is' if len(unknown) == 1 else 'are'} not installed; "
                      f"installed plugins: {', '.join(installed) or '(none)'}", stacklevel=3)
    for ep in sorted(eps, key=lambda e: e.name):
        if wanted is not None and ep.name not in wanted:
            continue
        version = ep.dist.version if ep.dist is not None else "unknown"
        try:
            module = ep.load()
        except BaseException as exc:  # noqa: BLE001 - a plugin may raise anything at import
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
            where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
            state.plugins[ep.name] = PluginInfo(
                name=ep.name, version=version, error=f"{type(exc).__name__}: {exc}{where}"
            )
            continue
        _register_plugin_obj(state, module, ep.name, version)
    return state


def _registry() -> _Registry:
    global _state
    with _lock:
        if _state is None:
            _state = _load()
        return _state


def reload_plugins() -> None:
    """Forget everything loaded and load entry points again on next use."""
    global _state
    with _lock:
        _state = None


def plugin_manager() -> pluggy.PluginManager:
    """The pluggy manager holding every loaded plugin (for hooks such as ``register_commands``)."""
    return _registry().pm


def register_plugin(plugin: Any, name: str | None = None) -> PluginInfo:
    """Register a module or object in-process (tests, notebooks).

    Returns its `PluginInfo`; if registration failed, ``info.error`` says why. Registering an object
    that is already registered (e.g. a plugin module that is also installed, so its entry point
    loaded it) returns the existing `PluginInfo`, whatever ``name`` is given, so a test recipe works
    installed or not. Another object under a taken name is a `RegistrationError`.
    """
    state = _registry()
    name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    version = str(getattr(plugin, "__version__", "0"))
    with _lock:
        existing = state.pm.get_name(plugin) if state.pm.is_registered(plugin) else None
        if existing is not None and existing in state.plugins:
            return state.plugins[existing]
        if name in state.plugins:
            raise RegistrationError(f"a plugin named {name!r} is already registered")
        return _register_plugin_obj(state, plugin, name, version)


def plugins() -> list[PluginInfo]:
    """Every plugin found, loaded or failed, the core's built-ins first."""
    return list(_registry().plugins.values())


def components(kind: str | None = None) -> list[ComponentInfo]:
    """Registered components, optionally of one kind, sorted by (kind, name)."""
    if kind is not None and kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
    infos = [e.info for (k, _), e in _registry().entries.items() if kind is None or k == kind]
    return sorted(infos, key=lambda i: (KINDS.index(i.kind), i.name))


def get_class(kind: str, name: str) -> type:
    """The registered class for (kind, name)."""
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
    entry = _registry().entries.get((kind, name))
    if entry is None:
        raise UnknownComponentError(kind, name, [n for (k, n) in _registry().entries if k == kind])
    return entry.cls


def validate_config(kind: str, name: str, config: dict[str, Any]) -> BaseModel:
    """Validate ``config`` for (kind, name); raise `ConfigError` naming the field."""
    cls = get_class(kind, name)
    fields = cls.Config.model_fields
    extra = cls.Config.model_config.get("extra")
    if extra != "allow":
        for key in config:
            if key not in fields:
                known = ", ".join(fields) or "(none)"
                raise ConfigError(f"{kind} {name!r}: unknown config field {key!r}; fields are: {known}", field=key)
    try:
        return cls.Config.model_validate(config)  # pydantic's error, to name the kind and component below
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(config)"
        raise ConfigError(f"{kind} {name!r}: invalid config field {loc!r}: {err['msg']}", field=loc) from exc


def create(kind: str, name: str, **config: Any) -> Any:
    """Build a ready component: ``cls(cls.Config(**config))``.

    Raises:
        UnknownComponentError: no such (kind, name); the message lists those that exist.
        ConfigError: a config field is unknown or invalid; the message names it.
    """
    cls = get_class(kind, name)
    return cls(validate_config(kind, name, config))


def models() -> dict[str, tuple[str, Any, str]]:
    """``name -> (plugin, load, summary)`` for every model plugins name through ``register_models``
    (collected when each plugin loaded; a plugin whose hook failed names none and is reported)."""
    return dict(_registry().models)


def demo_sections() -> list[tuple[str, str, Any]]:
    """``(plugin, title, run)`` for every section plugins add to ``xcorr demo``, in load order (a
    plugin whose hook failed adds none; the demo lists it as failed)."""
    return list(_registry().sections)
