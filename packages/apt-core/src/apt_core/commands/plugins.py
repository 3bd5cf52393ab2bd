"""``apt-model plugins``: what is installed, what is active, and why not."""

from __future__ import annotations

import json

import click

__all__ = ["plugins"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "show_all", is_flag=True, help="Also list disabled plugins and the built-in core.")
def plugins(as_json: bool, show_all: bool) -> None:
    """List plugins: name, distribution, version, status, hooks, error."""
    from ..plugins import BUILTIN_NAME, get_plugin_manager, plugin_infos

    pm = get_plugin_manager()
    # Register commands too, so a plugin whose command registration fails is reported as failed.
    click.get_current_context().find_root().command.add_plugin_commands()
    infos = [
        info for info in plugin_infos(pm)
        if show_all or (info.name != BUILTIN_NAME and info.status != "disabled")
    ]
    if as_json:
        click.echo(json.dumps([info.to_dict() for info in infos], indent=2))
        return
    if not infos:
        click.echo("No plugins loaded. Install one, e.g.: pip install apt-plugin-prune  (see --all)")
        return
    rows = [("NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS")]
    rows += [(i.name, i.distribution or "-", i.version or "-", i.status, str(len(i.hooks))) for i in infos]
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for info in infos:
        if info.error:
            click.echo(f"\n{info.name} {info.status}: {info.error}\n  disable it with APT_DISABLE_PLUGINS={info.name}")
        elif show_all and info.hooks:
            click.echo(f"\n{info.name}: {', '.join(info.hooks)}")
