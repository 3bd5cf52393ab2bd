"""``apt-model backup / restore / backups {list,verify,prune} / sync``.

Only click is imported here; the engine (and a backend's SDK, when its scheme is used) is imported
inside the command bodies, so ``apt-model --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["COMMANDS", "backup_command", "restore_command", "backups_group", "sync_command"]

_URL_HELP = "Store URL: file://DIR, s3://BUCKET/PREFIX, oss://BUCKET/PREFIX, hf://USER/REPO, modelscope://OWNER/REPO."


def _progress_option(f):
    return click.option("--quiet", "-q", is_flag=True, help="No progress bar.")(f)


def _json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(f)


def _concurrency_option(f):
    return click.option("--concurrency", "-j", type=click.IntRange(1, 64), default=None,
                        help="Parallel transfers (default: [plugins.cloud] concurrency).")(f)


def _context(quiet: bool, concurrency: int | None):
    from .settings import cloud_config, transfer_options

    config = cloud_config()
    return config, transfer_options(config, progress=not quiet, concurrency=concurrency)


def _table(title: str, rows: list[tuple[str, object]]) -> None:
    width = max(len(k) for k, _ in rows)
    click.echo(title)
    for key, value in rows:
        click.echo(f"  {key.ljust(width)}  {value}")


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _resolve_checkpoint_dir(path: Path) -> Path:
    """A run directory's ``latest`` pointer names the checkpoint to back up; anything else is used as is."""
    from apt_core.errors import APTError

    pointer = path / "latest"
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        if not name or "/" in name or name.startswith("."):
            raise APTError(f"invalid checkpoint pointer {pointer}: {name!r}")
        path = path / name
    if not path.is_dir():
        raise APTError(f"checkpoint directory not found: {path}")
    return path


@click.command("backup")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("url", required=False)
@click.option("--name", help="Snapshot name (default: the checkpoint directory's name).")
@click.option("--rehash", is_flag=True, help="Hash every file even if the local hash cache says it is unchanged.")
@_concurrency_option
@_progress_option
@_json_option
def backup_command(checkpoint: Path, url: str | None, name: str | None, rehash: bool, concurrency, quiet: bool,
                   as_json: bool) -> None:
    """Back up CHECKPOINT (a checkpoint or run directory) to URL, uploading only new chunks.

    URL defaults to [plugins.cloud] default_store (file://~/.cache/apt-model/backups).
    """
    from .settings import open_store
    from .transfer import backup

    config, opts = _context(quiet, concurrency)
    opts.hash_cache = not rehash
    store = open_store(url or config["default_store"], config)
    result = backup(_resolve_checkpoint_dir(checkpoint), store, name=name, opts=opts)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    _table(f"backup {result.name} -> {result.url}" + (" (unchanged)" if result.unchanged else ""), [
        ("files", result.files), ("size", _mb(result.total_bytes)),
        ("uploaded", f"{_mb(result.uploaded_bytes)} in {result.uploaded_objects} objects"),
        ("reused", f"{result.reused_objects} objects already stored"),
        ("time", f"{result.seconds:.2f} s"),
    ])


@click.command("restore")
@click.argument("url")
@click.argument("name")
@click.argument("out", type=click.Path(path_type=Path))
@_concurrency_option
@_progress_option
@_json_option
def restore_command(url: str, name: str, out: Path, concurrency, quiet: bool, as_json: bool) -> None:
    """Restore snapshot NAME from URL into the new directory OUT, verifying every sha256."""
    from .settings import open_store
    from .transfer import restore

    config, opts = _context(quiet, concurrency)
    result = restore(open_store(url, config), name, out, opts)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    _table(f"restored {name} -> {result.out} (verified)", [
        ("files", result.files), ("size", _mb(result.bytes)), ("time", f"{result.seconds:.2f} s")])


@click.group("backups")
def backups_group() -> None:
    """List, verify and prune the snapshots in a store."""


@backups_group.command("list")
@click.argument("url", required=False)
@_json_option
def list_command(url: str | None, as_json: bool) -> None:
    """List the snapshots in URL (default: [plugins.cloud] default_store)."""
    from .settings import cloud_config, open_store
    from .transfer import TransferOptions, list_snapshots

    config = cloud_config()
    store = open_store(url or config["default_store"], config)
    snapshots = list_snapshots(store, TransferOptions(concurrency=config["concurrency"], progress=False))
    rows = [{"name": m.name, "created": m.created, "files": len(m.files), "size": m.total_size,
             "source": m.source.get("label") or m.source.get("path", "")} for m in snapshots]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no snapshots in {store.url}")
        return
    width = max([4] + [len(r["name"]) for r in rows])
    click.echo(f"{'name'.ljust(width)}  {'created (UTC)':19}  {'files':>5}  {'size':>12}")
    for r in rows:
        click.echo(f"{r['name'].ljust(width)}  {r['created'][:19].replace('T', ' '):19}  {r['files']:>5}  "
                   f"{_mb(r['size']):>12}")


@backups_group.command("verify")
@click.argument("url")
@click.argument("name", required=False)
@_concurrency_option
@_progress_option
@_json_option
def verify_command(url: str, name: str | None, concurrency, quiet: bool, as_json: bool) -> None:
    """Re-download and re-hash every object snapshot NAME (default: all) needs; fail on any problem."""
    from apt_core.errors import APTError

    from .maintain import verify
    from .settings import open_store

    config, opts = _context(quiet, concurrency)
    store = open_store(url, config)
    report = verify(store, name, opts)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _table(f"verify {store.url}: {'OK' if report.ok else 'FAILED'}", [
            ("snapshots", len(report.snapshots)), ("objects checked", report.objects_checked),
            ("bytes checked", _mb(report.bytes_checked)), ("missing objects", len(report.missing)),
            ("corrupt objects", len(report.corrupt)), ("bad manifests", len(report.bad_manifests))])
        for sha in report.corrupt:
            click.echo(f"  corrupt: objects/{sha[:2]}/{sha}", err=True)
        for sha in report.missing:
            click.echo(f"  missing: objects/{sha[:2]}/{sha}", err=True)
        for line in report.bad_manifests:
            click.echo(f"  bad manifest: {line}", err=True)
    if not report.ok:
        raise APTError(f"verification of {store.url} failed: {len(report.corrupt)} corrupt, "
                       f"{len(report.missing)} missing objects, {len(report.bad_manifests)} bad manifests")


@backups_group.command("prune")
@click.argument("url")
@click.option("--keep", type=click.IntRange(1), required=True, help="How many of the newest snapshots to keep.")
@click.option("--grace", type=float, default=3600.0, show_default=True,
              help="Seconds an unreferenced object is spared (it may belong to a backup in progress).")
@click.option("--dry-run", is_flag=True, help="Report what would be deleted, delete nothing.")
@_json_option
def prune_command(url: str, keep: int, grace: float, dry_run: bool, as_json: bool) -> None:
    """Keep the KEEP newest snapshots; delete the rest and the objects only they needed."""
    from .maintain import prune
    from .settings import open_store

    config, opts = _context(True, None)
    result = prune(open_store(url, config), keep, opts, grace_s=grace, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    _table(f"prune {url}" + (" (dry run)" if dry_run else ""), [
        ("kept", ", ".join(result.kept) or "-"), ("deleted snapshots", ", ".join(result.deleted_snapshots) or "-"),
        ("deleted objects", result.deleted_objects), ("freed", _mb(result.freed_bytes)),
        ("aborted uploads", result.aborted_uploads)])


@click.command("sync")
@click.argument("src")
@click.argument("dst")
@click.option("--name", "names", multiple=True, help="Only these snapshots (repeatable; default: all).")
@_concurrency_option
@_progress_option
@_json_option
def sync_command(src: str, dst: str, names: tuple[str, ...], concurrency, quiet: bool, as_json: bool) -> None:
    """Copy the snapshots SRC has and DST lacks; verified, idempotent, resumable."""
    from .maintain import sync
    from .settings import open_store

    config, opts = _context(quiet, concurrency)
    result = sync(open_store(src, config), open_store(dst, config), opts, list(names) or None)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    _table(f"sync {src} -> {dst}", [
        ("copied snapshots", ", ".join(result.copied_snapshots) or "-"),
        ("already there", ", ".join(result.skipped_snapshots) or "-"),
        ("copied", f"{_mb(result.copied_bytes)} in {result.copied_objects} objects"),
        ("time", f"{result.seconds:.2f} s")])


COMMANDS = [backup_command, restore_command, backups_group, sync_command]
