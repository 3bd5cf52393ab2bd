"""Name → object registries filled by the ``apt_register_*`` hooks.

Each plugin's implementation is called with a ``register`` callback bound to that plugin, so a
name registered twice is reported with both distributions, and a plugin whose registration hook
raises is marked ``failed`` without taking the others down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import APTError
from .plugins import PluginManager, get_plugin_manager

__all__ = ["Registry", "get_registry", "KINDS"]

# kind -> (hook name, what one entry is called in messages, the plugin that provides more)
KINDS: dict[str, tuple[str, str, str]] = {
    "data_sources": ("apt_register_data_sources", "data source scheme", "apt-plugin-hf"),
    "model_loaders": ("apt_register_model_loaders", "model scheme", "apt-plugin-hf"),
    "storage": ("apt_register_storage", "storage scheme", "apt-plugin-cloud"),
    "exporters": ("apt_register_exporters", "export format", "apt-plugin-hf"),
}


class Registry:
    """Entries of one kind, each remembering which plugin registered it."""

    def __init__(self, kind: str, noun: str, hint: str) -> None:
        self.kind, self.noun, self.hint = kind, noun, hint
        self._entries: dict[str, tuple[Any, str]] = {}

    def register(self, name: str, obj: Any, owner: str) -> None:
        if name in self._entries:
            raise APTError(f"{self.noun} '{name}' is registered by both {self._entries[name][1]} and {owner}")
        self._entries[name] = (obj, owner)

    def get(self, name: str) -> Any:
        """The entry registered as *name*; an :class:`APTError` naming the known ones if absent."""
        try:
            return self._entries[name][0]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise APTError(
                f"unknown {self.noun} '{name}' (known: {known}; more come with plugins such as {self.hint})"
            ) from None

    def owner(self, name: str) -> str:
        return self._entries[name][1]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


def call_with_register(pm: PluginManager, hook_name: str, add: Callable[[tuple, str], None]) -> None:
    """Call every implementation of a registration hook with its own ``register`` callback.

    ``add(args, owner)`` receives what one plugin registered and who that plugin is. An exception raised by a
    plugin (other than a conflict, which is the user's to fix) marks that plugin failed.
    """
    caller = getattr(pm.hook, hook_name)
    # get_hookimpls() is in registration order (pluggy *calls* them in reverse); keeping that
    # makes the built-in core plugin the first owner of its names.
    for impl in caller.get_hookimpls():
        owner = pm.distribution_of(impl.plugin_name)

        def register(*args, _owner=owner):
            add(args, _owner)

        try:
            impl.function(register=register)
        except APTError:
            raise
        except Exception as exc:  # a plugin bug must not take the host down
            pm.record_failure(impl.plugin_name, exc)


def get_registry(kind: str, pm: PluginManager | None = None) -> Registry:
    """The registry of *kind* (``data_sources``, ``model_loaders``, ``storage``, ``exporters``).

    Built on first use for each plugin manager and cached on it.
    """
    pm = pm or get_plugin_manager()
    if kind not in pm.registries:
        hook_name, noun, hint = KINDS[kind]
        registry = Registry(kind, noun, hint)
        call_with_register(pm, hook_name, lambda args, owner: registry.register(*args, owner=owner))
        pm.registries[kind] = registry
    return pm.registries[kind]
