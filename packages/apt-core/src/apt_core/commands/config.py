"""``apt-model config``: the effective configuration and where each value comes from."""

from __future__ import annotations

import json

import click

__all__ = ["config"]


@click.group()
def config() -> None:
    """Inspect the layered configuration (CLI > env > ./apt.toml > user config > defaults)."""


@config.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show(as_json: bool) -> None:
    """Show every setting with its value and source."""
    from ..config import get_config, user_config_path

    cfg = get_config()
    if as_json:
        payload = {
            "sections": cfg.values,
            "sources": {f"{s}.{k}": src for (s, k), src in sorted(cfg.sources.items())},
            "unclaimed": cfg.unclaimed,
            "files": {"user": str(user_config_path()), "project": "apt.toml"},
        }
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    click.echo(f"# user config: {user_config_path()}\n# project config: ./apt.toml")
    for section in sorted(cfg.values):
        click.echo(f"\n[plugins.{section}]")
        for key, value in cfg.values[section].items():
            click.echo(f"{key} = {json.dumps(value, default=str)}  # {cfg.sources.get((section, key), 'validator')}")
    for section in sorted(cfg.unclaimed):
        click.echo(f"\n# [plugins.{section}] is set but no loaded plugin declares it")
