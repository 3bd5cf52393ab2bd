"""The ``apt-model hf`` command group: export, import, push, pull, check, train.

Command bodies import their modules (and through them torch/transformers/huggingface_hub) only when
they run; defining the group imports click alone.
"""

from __future__ import annotations

import json

import click

__all__ = ["hf_group"]


def _settings() -> dict:
    from apt_core.config import get_config

    from .plugin import DEFAULTS

    return {**DEFAULTS, **get_config().plugin("hf")}


def _report(result: dict, as_json: bool, title: str) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True, default=str))
        return
    width = max(len(k) for k in result)
    click.echo(title)
    for key, value in result.items():
        shown = f"{value:.3g}" if isinstance(value, float) else value
        click.echo(f"  {key:<{width}}  {shown}")


@click.group("hf")
def hf_group() -> None:
    """Hugging Face: export/import, Hub push/pull, transformers.Trainer (apt-plugin-hf)."""


@hf_group.command("export")
@click.argument("checkpoint", type=click.Path())
@click.argument("out", type=click.Path())
@click.option("--shard-size", help="Largest safetensors file, e.g. 2GB or 500MB [config: plugins.hf.shard_size].")
@click.option("--as", "arch", type=click.Choice(["apt", "llama"]), default="apt", show_default=True,
              help="apt: remote code with every APT feature; llama: plain LlamaForCausalLM (APT features off).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), help="Cast the weights.")
@click.option("--dataset", help="Training data to name in the model card if the checkpoint does not record it.")
@click.option("--push", "push", metavar="REPO_ID", help="Upload the export to this Hub repo afterwards.")
@click.option("--private", is_flag=True, default=None, help="Create the --push repo private [config: plugins.hf.private].")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True)
def export_command(checkpoint, out, shard_size, arch, dtype, dataset, push, private, force, as_json) -> None:
    """Export CHECKPOINT (a checkpoint or run directory) to OUT, loadable by stock transformers."""
    from .export import export_checkpoint

    settings = _settings()
    written = export_checkpoint(checkpoint, out, shard_size=shard_size or settings["shard_size"], as_=arch,
                                dtype=dtype, dataset=dataset, overwrite=force, push=push,
                                private=settings["private"] if private is None else private)
    files = sorted(p.name for p in written.iterdir())
    _report({"out": str(written), "as": arch, "files": ", ".join(files), "pushed_to": push or "-"},
            as_json, "exported")


@hf_group.command("import")
@click.argument("src")
@click.argument("out", type=click.Path())
@click.option("--revision", help="Branch, tag or commit when SRC is a Hub repo.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True)
def import_command(src, out, revision, force, as_json) -> None:
    """Turn SRC (an exported folder or a Hub repo id) into an APT checkpoint at OUT."""
    from .importer import import_model

    path = import_model(src, out, revision=revision, overwrite=force)
    _report({"source": src, "checkpoint": str(path)}, as_json, "imported")


@hf_group.command("push")
@click.argument("directory", type=click.Path())
@click.argument("repo_id")
@click.option("--private", is_flag=True, default=None, help="Create the repo private [config: plugins.hf.private].")
@click.option("--revision", help="Branch to commit to (default main).")
@click.option("--message", "-m", help="Commit message.")
@click.option("--json", "as_json", is_flag=True)
def push_command(directory, repo_id, private, revision, message, as_json) -> None:
    """Upload every file of DIRECTORY to the Hub repo REPO_ID (created if needed), in one commit.

    Token: HF_TOKEN or `hf auth login`; endpoint: HF_ENDPOINT.
    """
    from .hub import push_folder

    settings = _settings()
    url = push_folder(directory, repo_id, private=settings["private"] if private is None else private,
                      revision=revision, commit_message=message)
    _report({"directory": str(directory), "repo": repo_id, "commit": url}, as_json, "pushed")


@hf_group.command("pull")
@click.argument("repo_id")
@click.argument("out", type=click.Path())
@click.option("--revision", help="Branch, tag or commit (default main).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True)
def pull_command(repo_id, out, revision, force, as_json) -> None:
    """Download every file of the Hub repo REPO_ID into OUT (all or nothing)."""
    from .hub import pull_repo

    path = pull_repo(repo_id, out, revision=revision, overwrite=force)
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    _report({"repo": repo_id, "out": str(path), "files": len(files)}, as_json, "pulled")


@hf_group.command("check")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--checkpoint", type=click.Path(exists=True), help="Compare with this APT checkpoint "
              "(default: the folder's own weights loaded into apt_core).")
@click.option("--text", help="Text to tokenize and score (default: a built-in sample).")
@click.option("--tolerance", type=float, default=1e-5, show_default=True, help="Largest allowed logit difference.")
@click.option("--json", "as_json", is_flag=True)
def check_command(folder, checkpoint, text, tolerance, as_json) -> None:
    """Load FOLDER with AutoModelForCausalLM/AutoTokenizer and compare it with APT (runs the folder's code)."""
    from apt_core.errors import APTError

    from .check import SAMPLE_TEXT, check_export

    result = check_export(folder, checkpoint, text=text or SAMPLE_TEXT, tolerance=tolerance)
    _report(result, as_json, "transformers vs APT")
    if not result["passed"]:
        raise APTError(f"check failed for {folder}: the transformers model does not reproduce APT")


def _add_train_command() -> None:
    # hf_train imports only click at module level; torch/transformers load inside the command body.
    from .hf_train import train_command

    hf_group.add_command(train_command)


_add_train_command()
