"""``apt-model export CKPT OUT --format NAME``: write a checkpoint in another format via a plugin."""

from __future__ import annotations

import click

__all__ = ["export"]


def _parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    from apt_core.errors import APTError

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise APTError(f"--option expects KEY=VALUE, got {pair!r}")
        options[key.replace("-", "_")] = value
    return options


@click.command()
@click.argument("checkpoint", type=click.Path())
@click.argument("out", type=click.Path())
@click.option("--format", "-f", "fmt", required=True, help="Export format (registered by plugins, e.g. hf).")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE", help="Exporter option (repeatable).")
@click.option("--json", "as_json", is_flag=True)
def export(checkpoint, out, fmt, options, as_json) -> None:
    """Export CHECKPOINT to OUT in --format (see `apt-model plugins` for installed exporters)."""
    from pathlib import Path

    from apt_core.checkpoint import resolve_checkpoint
    from apt_core.commands._output import print_json
    from apt_core.errors import APTError
    from apt_core.registry import get_registry

    exporter = get_registry("exporters").get(fmt)
    source = resolve_checkpoint(checkpoint)
    target = Path(out)
    if target.resolve() == source.resolve():
        raise APTError("OUT must differ from the checkpoint directory")
    result = exporter(source, target, **_parse_options(options))
    written = Path(result) if result is not None else target
    if not written.exists():
        raise APTError(f"exporter {fmt!r} reported {written}, which does not exist")
    if as_json:
        print_json({"checkpoint": str(source), "format": fmt, "out": str(written)})
    else:
        click.echo(f"exported {source} as {fmt} -> {written}")
