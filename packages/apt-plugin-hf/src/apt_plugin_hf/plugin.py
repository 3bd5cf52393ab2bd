"""Entry point of the ``hf`` plugin: hook implementations only, no heavy imports at module level.

Every hook body imports what it needs when it runs, so ``apt-model --help`` and ``apt-model plugins``
never import torch, transformers, huggingface_hub or datasets.
"""

from __future__ import annotations

import logging

from apt_core import hookimpl

__all__ = [
    "APT_API_VERSION",
    "DEFAULTS",
    "apt_register_commands",
    "apt_register_config",
    "apt_register_data_sources",
    "apt_register_model_loaders",
    "apt_register_exporters",
    "apt_train_end",
]

APT_API_VERSION = 1
log = logging.getLogger(__name__)

#: ``[plugins.hf]`` settings and their defaults.
DEFAULTS = {
    # Hub repo id to push the final checkpoint to (exported to HF format) when training ends; "" = off.
    "auto_upload": "",
    # Create auto_upload / push repos private.
    "private": False,
    # Largest safetensors shard written by exports.
    "shard_size": "2GB",
    # Allow remote code of non-APT models loaded with --model hf:... (APT exports never need it).
    "trust_remote_code": False,
    # Retries of 429/5xx/connection failures in Hub transfers, and the first backoff delay in seconds.
    "retries": 4,
    "retry_base_delay": 1.0,
}


def _validate(settings: dict) -> dict:
    from apt_core.errors import APTError

    from .weights import parse_size

    parse_size(settings["shard_size"])
    if settings["retries"] < 0:
        raise APTError(f"plugins.hf.retries must be >= 0, got {settings['retries']}")
    if settings["retry_base_delay"] < 0:
        raise APTError(f"plugins.hf.retry_base_delay must be >= 0, got {settings['retry_base_delay']}")
    repo = settings["auto_upload"].strip()
    if repo:
        from .hub import looks_like_repo_id

        if not looks_like_repo_id(repo):
            raise APTError(f"plugins.hf.auto_upload must be a Hub repo id like user/name, got {repo!r}")
    settings["auto_upload"] = repo
    return settings


def _hf_documents(location, *, text_field, streaming):
    from .datasets_source import hf_documents

    return hf_documents(location, text_field=text_field, streaming=streaming)


def _hf_model(location):
    from .model_loader import load_hf_causal_lm

    return load_hf_causal_lm(location)


def _hf_exporter(checkpoint, out, **options):
    from .export import hf_exporter

    return hf_exporter(checkpoint, out, **options)


@hookimpl
def apt_register_commands(cli):
    from .commands import hf_group

    cli.add_command(hf_group)


@hookimpl
def apt_register_config(register):
    register("hf", dict(DEFAULTS), _validate)


@hookimpl
def apt_register_data_sources(register):
    register("hf", _hf_documents)


@hookimpl
def apt_register_model_loaders(register):
    register("hf", _hf_model)


@hookimpl
def apt_register_exporters(register):
    register("hf", _hf_exporter)


@hookimpl
def apt_train_end(trainer, metrics):
    """``auto_upload``: export the run's final checkpoint to HF format and push it (main process only)."""
    from apt_core.config import get_config

    settings = {**DEFAULTS, **get_config().plugin("hf")}
    repo = settings["auto_upload"]
    if not repo or not getattr(trainer, "is_main_process", True) or getattr(trainer, "out_dir", None) is None:
        return
    from .auto_upload import upload_final_checkpoint

    upload_final_checkpoint(trainer.out_dir, repo, private=settings["private"])
