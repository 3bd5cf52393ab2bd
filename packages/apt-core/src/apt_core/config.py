"""Layered configuration: CLI > env ``APT_<SECTION>__<KEY>`` > ``./apt.toml`` > user config > defaults.

Plugins declare their ``[plugins.<section>]`` through ``apt_register_config``: every key with its
default (unknown keys are rejected, so typos are caught) and an optional validator. The core's own
settings live in ``[plugins]`` itself (``disable = [...]``), read before any plugin is loaded.
Secrets never belong here: they come from the environment or the SDKs' own credential chains.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from .errors import APTError

__all__ = ["Config", "get_config", "read_raw_config", "set_cli_overrides", "user_config_path"]

PROJECT_FILE = "apt.toml"


def user_config_path() -> Path:
    """``$APT_CONFIG_HOME/config.toml``, else ``$XDG_CONFIG_HOME/apt-model/config.toml``."""
    if os.environ.get("APT_CONFIG_HOME"):
        return Path(os.environ["APT_CONFIG_HOME"]) / "config.toml"
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "apt-model" / "config.toml"


def _read_toml(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise APTError(f"invalid config file {path}: {exc}") from None


def _file_layers() -> list[tuple[str, dict]]:
    return [(str(user_config_path()), _read_toml(user_config_path())), (PROJECT_FILE, _read_toml(Path(PROJECT_FILE)))]


def read_raw_config() -> dict:
    """The user and project files merged (project wins), without defaults or validation."""
    merged: dict = {}
    for _, data in _file_layers():
        plugins = data.get("plugins", {})
        target = merged.setdefault("plugins", {})
        for key, value in plugins.items():
            if isinstance(value, dict):
                target.setdefault(key, {}).update(value)
            else:
                target[key] = value
    return merged


def _parse_env_value(text: str) -> Any:
    """Env values are TOML literals when they parse as one (lists, numbers, booleans), else strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


@dataclass
class Section:
    defaults: dict
    validate: Callable[[dict], dict] | None
    owner: str


@dataclass
class Config:
    """Validated settings per plugin section, and where each value came from."""

    values: dict[str, dict] = field(default_factory=dict)
    sources: dict[tuple[str, str], str] = field(default_factory=dict)
    unclaimed: dict[str, dict] = field(default_factory=dict)

    def plugin(self, section: str) -> dict:
        """The settings of ``[plugins.<section>]`` with defaults applied (empty if nobody declared it)."""
        return dict(self.values.get(section, {}))


def _collect_sections(pm) -> dict[str, Section]:
    from .registry import call_with_register

    sections: dict[str, Section] = {}

    def add(args, owner):
        section, defaults, validate = args
        if section in sections:
            raise APTError(f"config section '{section}' is declared by both {sections[section].owner} and {owner}")
        sections[section] = Section(dict(defaults), validate, owner)

    call_with_register(pm, "apt_register_config", add)
    return sections


def _check_type(name: str, value: Any, default: Any, source: str) -> None:
    if default is None or isinstance(value, type(default)):
        return
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return
    raise APTError(
        f"setting {name} from {source} must be {type(default).__name__}, got {type(value).__name__} {value!r}"
    )


def build_config(pm, cli_overrides: list[str] | None = None) -> Config:
    """Merge every layer for every declared section, check keys and types, run the validators."""
    sections = _collect_sections(pm)
    layers: list[tuple[str, dict]] = []
    for source, data in _file_layers():
        layers.append((source, {k: v for k, v in data.get("plugins", {}).items() if isinstance(v, dict)}))
    env: dict[str, dict] = {}
    for key, value in os.environ.items():
        if key.startswith("APT_") and "__" in key:
            section, _, name = key[4:].lower().partition("__")
            env.setdefault(section, {})[name] = _parse_env_value(value)
    layers.append(("environment", env))
    cli: dict[str, dict] = {}
    for item in cli_overrides or []:
        target, sep, value = item.partition("=")
        section, dot, name = target.partition(".")
        if not sep or not dot:
            raise APTError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        cli.setdefault(section, {})[name] = _parse_env_value(value)
    layers.append(("command line", cli))

    config = Config()
    for section, spec in sections.items():
        merged = dict(spec.defaults)
        for key in merged:
            config.sources[(section, key)] = "default"
        for source, data in layers:
            for key, value in data.get(section, {}).items():
                name = f"plugins.{section}.{key}"
                if key not in spec.defaults:
                    known = ", ".join(sorted(spec.defaults))
                    raise APTError(f"unknown setting {name} from {source} (known: {known})")
                _check_type(name, value, spec.defaults[key], source)
                merged[key] = value
                config.sources[(section, key)] = source
        config.values[section] = spec.validate(merged) if spec.validate else merged
    for _, data in layers:
        for section, values in data.items():
            if section not in sections:
                config.unclaimed.setdefault(section, {}).update(values)
    return config


_cli_overrides: list[str] = []


def set_cli_overrides(overrides: list[str]) -> None:
    """Record ``apt-model --set SECTION.KEY=VALUE`` options (highest precedence)."""
    _cli_overrides[:] = overrides


def get_config(pm=None) -> Config:
    """The validated configuration for *pm* (default: the process-wide plugin manager), cached on it."""
    from .plugins import get_plugin_manager

    pm = pm or get_plugin_manager()
    if pm.config is None or pm.config[0] != _cli_overrides:
        pm.config = (list(_cli_overrides), build_config(pm, _cli_overrides))
    return pm.config[1]
