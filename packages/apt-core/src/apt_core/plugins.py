"""Plugin discovery and loading, with per-plugin failure isolation.

Why not ``PluginManager.load_setuptools_entrypoints``: it has no error handling, so one broken
plugin crashes the host. Here each plugin is loaded on its own; a plugin that cannot be used is
recorded with a status and an error, a warning names it and says how to disable it, and every
other plugin and the core keep working (``APT_STRICT_PLUGINS=1`` turns failures into errors).

Statuses: ``active``, ``disabled`` (by allow/deny lists, before any of its code runs),
``failed`` (import error, bad hook signature, unknown hook name, error while registering),
``incompatible`` (built for another major version of the hook API).
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from importlib import import_module

import pluggy

from . import __version__, hookspecs
from .errors import APTError

__all__ = [
    "API_VERSION",
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "PluginManager",
    "get_plugin_manager",
    "set_plugin_manager",
    "make_plugin_manager",
    "plugin_infos",
    "BUILTIN_NAME",
]

API_VERSION = 1
"""Major version of the hook API. A plugin built for another major version is ``incompatible``."""

ENTRY_POINT_GROUP = "apt.plugins"
BUILTIN_NAME = "core"
BUILTIN_MODULE = "apt_core.builtin_plugin"

log = logging.getLogger("apt_core.plugins")


@dataclass
class PluginInfo:
    """What ``apt-model plugins`` reports about one plugin."""

    name: str
    distribution: str | None
    version: str | None
    status: str
    module: str
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers what happened to every discovered plugin."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.strict = False
        #: Built on first use by apt_core.registry.get_registry / apt_core.config.get_config.
        self.registries: dict = {}
        self.config: tuple | None = None  # (the --set overrides it was built with, Config)

    def distribution_of(self, plugin_name: str) -> str:
        """The distribution that provides a registered plugin (for error messages)."""
        info = self.infos.get(plugin_name)
        if info and info.distribution:
            return f"{info.distribution} (plugin '{plugin_name}')"
        return f"plugin '{plugin_name}'"

    def record_failure(self, name: str, error: BaseException | str, status: str = "failed") -> None:
        """Mark a plugin as unusable, unregister it, and warn once (or raise in strict mode)."""
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        info = self.infos.get(name)
        if info is not None:
            info.status, info.error, info.hooks = status, message, []
        plugin = self.get_plugin(name)
        if plugin is not None:
            self.unregister(plugin)
        if self.strict:
            raise APTError(f"plugin '{name}' {status}: {message}")
        log.warning(
            "plugin '%s' %s: %s (disable it with APT_DISABLE_PLUGINS=%s)", name, status, message, name
        )


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _split_names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _hook_names(pm: PluginManager, plugin: object) -> list[str]:
    return sorted(caller.name for caller in (pm.get_hookcallers(plugin) or []))


def _unknown_hooks(pm: PluginManager, plugin: object) -> list[str]:
    """Hook implementations of *plugin* that match no hookspec: usually a misspelled name."""
    unknown = []
    for name, caller in vars(pm.hook).items():
        if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
            continue
        if any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls()):
            unknown.append(name)
    return unknown


def _describe_unknown(name: str) -> str:
    known = [n for n in dir(hookspecs) if n.startswith("apt_")]
    guess = difflib.get_close_matches(name, known, n=1)
    return f"unknown hook '{name}'" + (f" (did you mean '{guess[0]}'?)" if guess else "")


# "name [extras] (specifiers) ; marker" -- parsed by hand because packaging.requirements costs more
# start-up time than everything else in `apt-model plugins`; only the specifier set needs packaging.
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*\(?([^;()]*)\)?\s*(;.*)?$")


def _incompatible_requirement(requires: list[str]) -> str | None:
    """Check the plugin's declared ``apt-core`` requirement before running any of its code."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    for line in requires:
        match = _REQUIREMENT.match(line)
        if not match or re.sub(r"[-_.]+", "-", match[1]).lower() != "apt-core" or match[3]:
            continue
        try:
            specifier = SpecifierSet(match[2].strip())
        except InvalidSpecifier:
            continue
        if specifier and not specifier.contains(__version__, prereleases=True):
            return f"requires apt-core{specifier}, this is apt-core {__version__}"
    return None


def _install_tracing(pm: PluginManager) -> None:
    """``APT_TRACE_PLUGINS=1``: log every hook call with the implementations it ran and its duration."""
    trace = logging.getLogger("apt_core.trace")
    started: list[float] = []

    def before(hook_name, hook_impls, kwargs):
        started.append(time.perf_counter())

    def after(outcome, hook_name, hook_impls, kwargs):
        elapsed = time.perf_counter() - started.pop()
        names = ",".join(impl.plugin_name for impl in hook_impls) or "-"
        trace.warning("hook %s [%s] %.3f ms", hook_name, names, elapsed * 1e3)

    pm.add_hookcall_monitoring(before, after)


def make_plugin_manager(
    *,
    entry_points: bool = True,
    plugins: Iterable[object] = (),
    load: list[str] | None = None,
    disable: Iterable[str] = (),
    strict: bool | None = None,
    trace: bool | None = None,
) -> PluginManager:
    """Build a plugin manager: the built-in core plugin, *plugins*, then entry-point plugins.

    :param entry_points: discover installed plugins in the ``apt.plugins`` entry-point group.
    :param plugins: extra plugin objects or modules to register (tests, embedding applications).
    :param load: if not ``None``, only these entry-point plugins are loaded (empty list: none).
    :param disable: entry-point plugins not to load.
    :param strict: raise :class:`APTError` on the first plugin failure (default ``APT_STRICT_PLUGINS``).
    :param trace: log every hook call (default ``APT_TRACE_PLUGINS``).
    """
    pm = PluginManager()
    pm.strict = _env_flag("APT_STRICT_PLUGINS") if strict is None else strict
    if _env_flag("APT_TRACE_PLUGINS") if trace is None else trace:
        _install_tracing(pm)

    builtin = import_module(BUILTIN_MODULE)
    pm.register(builtin, name=BUILTIN_NAME)
    pm.infos[BUILTIN_NAME] = PluginInfo(
        BUILTIN_NAME, "apt-core", __version__, "builtin", BUILTIN_MODULE, _hook_names(pm, builtin)
    )
    for plugin in plugins:
        _register(pm, plugin, getattr(plugin, "__name__", None) or type(plugin).__name__, None)
    if entry_points:
        _load_entry_points(pm, load, list(disable))
    return pm


def _load_entry_points(pm: PluginManager, load: list[str] | None, disable: list[str]) -> None:
    import importlib_metadata

    found = {}
    for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)  # first one wins, as pip would shadow duplicates anyway
    unknown = sorted(set(load or []).union(disable) - set(found))
    if unknown:
        known = ", ".join(sorted(found)) or "none installed"
        raise APTError(f"unknown plugin name(s) {', '.join(unknown)} in plugin lists (installed: {known})")

    for name, ep in sorted(found.items()):
        # Parse the metadata once: each of dist.name / .version / .requires would parse it again.
        metadata = ep.dist.metadata if ep.dist else {}
        info = PluginInfo(name, metadata.get("Name"), metadata.get("Version"), "disabled", ep.value)
        pm.infos[name] = info
        if (load is not None and name not in load) or name in disable:
            continue
        problem = _incompatible_requirement(metadata.get_all("Requires-Dist") or []) if metadata else None
        if problem:
            pm.record_failure(name, problem, status="incompatible")
            continue
        try:
            module = ep.load()
        except Exception as exc:  # any import-time error of a third-party plugin
            pm.record_failure(name, exc)
            continue
        declared = getattr(module, "APT_API_VERSION", API_VERSION)
        if int(str(declared).split(".")[0]) != API_VERSION:
            pm.record_failure(
                name, f"built for hook API {declared}, this apt-core provides {API_VERSION}", "incompatible"
            )
            continue
        _register(pm, module, name, info)


def _register(pm: PluginManager, plugin: object, name: str, info: PluginInfo | None) -> None:
    if info is None:
        info = PluginInfo(name, None, None, "active", getattr(plugin, "__name__", repr(plugin)))
        pm.infos[name] = info
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        pm.record_failure(name, exc)
        return
    unknown = _unknown_hooks(pm, plugin)
    if unknown:
        pm.record_failure(name, "; ".join(_describe_unknown(hook) for hook in unknown))
        return
    info.status, info.hooks = "active", _hook_names(pm, plugin)


# The process-wide manager. Loaded lazily so that importing apt_core costs nothing.
_current: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, built on first use from the environment and config."""
    global _current
    if _current is None:
        from .config import read_raw_config

        raw = read_raw_config().get("plugins", {})
        load = _split_names(os.environ.get("APT_LOAD_PLUGINS"))
        disable = set(_split_names(os.environ.get("APT_DISABLE_PLUGINS")) or [])
        disable.update(raw.get("disable", []))
        _current = make_plugin_manager(load=load, disable=sorted(disable))
    return _current


def set_plugin_manager(pm: PluginManager | None) -> PluginManager | None:
    """Install *pm* as the process-wide manager; returns the previous one (for tests)."""
    global _current
    previous, _current = _current, pm
    return previous


def plugin_infos(pm: PluginManager | None = None) -> list[PluginInfo]:
    """Every discovered plugin with its status, the built-in core plugin first."""
    pm = pm or get_plugin_manager()
    return sorted(pm.infos.values(), key=lambda info: (info.name != BUILTIN_NAME, info.name))
