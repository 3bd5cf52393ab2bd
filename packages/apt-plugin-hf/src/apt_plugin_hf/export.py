"""Export an APT checkpoint to a folder that stock ``transformers`` loads (the ``hf`` exporter).

Layout of an ``apt`` export::

    config.json              model_type "apt", auto_map -> the two files below, architectures, dtype
    configuration_apt.py     self-contained (imports transformers only)
    modeling_apt.py          self-contained (imports torch and transformers only)
    model.safetensors        or model-0000i-of-0000n.safetensors + model.safetensors.index.json
    tokenizer.json, tokenizer_config.json   AutoTokenizer (PreTrainedTokenizerFast)
    generation_config.json
    README.md                model card (huggingface_hub.ModelCard)
    .gitattributes           the Hub's LFS rules, so a pushed folder pulls back byte for byte

``as_="llama"`` writes a plain ``LlamaForCausalLM`` instead (no remote code) when the config maps
exactly onto Llama. The folder is staged and renamed into place: all or nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from apt_core.errors import APTError

__all__ = ["export_checkpoint", "hf_exporter", "GITATTRIBUTES", "AUTO_MAP"]

AUTO_MAP = {"AutoConfig": "configuration_apt.APTConfig", "AutoModelForCausalLM": "modeling_apt.APTForCausalLM"}

#: The LFS rules the Hub puts in every new model repo (abridged to the formats an export contains).
GITATTRIBUTES = """\
*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
"""

_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise APTError(f"option {name} must be true or false, got {value!r}")


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    *,
    shard_size: str | int = "2GB",
    as_: str = "apt",
    dtype: str | None = None,
    dataset: str | None = None,
    name: str | None = None,
    overwrite: bool = False,
    push: str | None = None,
    private: bool = False,
) -> Path:
    """Export *checkpoint* (a checkpoint or run directory) to the folder *out*; optionally push it to the Hub.

    :param shard_size: largest safetensors file (``"2GB"``, ``"500MB"``, bytes); larger models are sharded.
    :param as_: ``"apt"`` (remote code, every APT feature) or ``"llama"`` (plain LlamaForCausalLM).
    :param dtype: cast floating-point weights (``float32``, ``bfloat16``, ``float16``); default as stored.
    :param dataset: training data to name in the model card when the checkpoint does not record it.
    :param name: title of the model card (default: the push repo id, else the folder name).
    :param push: a Hub repo id to upload the export to afterwards (``private`` creates it private).
    """
    from apt_core.checkpoint import load_checkpoint, resolve_checkpoint

    from .staging import check_target, staged_directory

    if as_ not in ("apt", "llama"):
        raise APTError(f"unknown export architecture {as_!r}: use apt or llama")
    if dtype is not None and dtype not in _DTYPES:
        raise APTError(f"unknown dtype {dtype!r}: use float32, bfloat16 or float16")
    out = Path(out)
    check_target(out, overwrite)  # fail before the (slow) imports and loads
    source = resolve_checkpoint(checkpoint)
    loaded = load_checkpoint(source, require_tokenizer=True)
    with staged_directory(out, overwrite=overwrite) as tmp:
        _write_export(loaded, tmp, shard_size=shard_size, arch=as_, dtype=_DTYPES.get(dtype or ""),
                      dataset=dataset, repo_name=name or push or out.name)
    if push:
        from .hub import push_folder

        push_folder(out, push, private=private)
    return out


def _write_export(loaded, directory: Path, *, shard_size, arch: str, dtype: str | None, dataset: str | None,
                  repo_name: str) -> None:
    import torch

    from .convert import apt_to_hf_config, apt_to_hf_state, apt_to_llama_config, apt_to_llama_state
    from .hf_tokenizer import save_hf_tokenizer
    from .model_card import build_model_card
    from .remote import REMOTE_FILES, remote_dir
    from .weights import write_weights

    config, model = loaded.config, loaded.model
    state = model.state_dict()
    if dtype is not None:
        target = getattr(torch, dtype)
        state = {k: (v.to(target) if v.is_floating_point() else v) for k, v in state.items()}
    stored_dtype = str(next(iter(state.values())).dtype).replace("torch.", "")

    if arch == "llama":
        from transformers import LlamaConfig

        hf_config = LlamaConfig(**apt_to_llama_config(config))
        hf_config.architectures = ["LlamaForCausalLM"]
        tensors = apt_to_llama_state(state, config)
    else:
        from .remote.configuration_apt import APTConfig as HFAPTConfig

        hf_config = HFAPTConfig(**apt_to_hf_config(config))
        hf_config.architectures = ["APTForCausalLM"]
        hf_config.auto_map = dict(AUTO_MAP)
        tensors = apt_to_hf_state(state, config.tie_embeddings)
        for name in REMOTE_FILES:
            shutil.copyfile(remote_dir() / name, directory / name)
    hf_config.dtype = stored_dtype
    # use_diff=False: every field is written, so the folder is readable without knowing the defaults.
    hf_config.to_json_file(str(directory / "config.json"), use_diff=False)
    write_weights(tensors, directory, shard_size)
    save_hf_tokenizer(loaded.tokenizer, directory, config.max_seq_len)
    _write_generation_config(config, directory)
    card = build_model_card(config=config, num_parameters=model.num_parameters(), trainer_state=loaded.trainer_state,
                            architecture=arch, repo_name=repo_name, dataset=dataset)
    card.save(str(directory / "README.md"))
    (directory / ".gitattributes").write_text(GITATTRIBUTES, encoding="utf-8")


def _write_generation_config(config, directory: Path) -> None:
    from transformers import GenerationConfig

    # No max_length: transformers warns on every generate(max_new_tokens=...) when both are set; the
    # model itself refuses to run past max_seq_len with a clear error.
    generation = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                  pad_token_id=config.pad_token_id)
    generation.save_pretrained(str(directory))


def hf_exporter(checkpoint: Path, out: Path, **options: Any) -> Path:
    """The ``hf`` exporter of ``apt-model export --format hf [-o KEY=VALUE ...]``.

    Options: ``shard_size``, ``as`` (apt|llama), ``dtype``, ``dataset``, ``push`` (repo id), ``private``,
    ``overwrite``. Values may be strings, as the core's ``--option KEY=VALUE`` passes them.
    """
    known = {"shard_size", "as", "as_", "arch", "dtype", "dataset", "push", "private", "overwrite", "force"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise APTError(f"unknown hf export option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    from .plugin import DEFAULTS

    arch = options.get("as") or options.get("as_") or options.get("arch") or "apt"
    settings = _settings_or_defaults(DEFAULTS)
    return export_checkpoint(
        checkpoint, out,
        shard_size=options.get("shard_size", settings["shard_size"]),
        as_=str(arch),
        dtype=options.get("dtype") or None,
        dataset=options.get("dataset") or None,
        overwrite=_as_bool("overwrite", options.get("overwrite", options.get("force", False))),
        push=options.get("push") or None,
        private=_as_bool("private", options.get("private", settings["private"])),
    )


def _settings_or_defaults(defaults: dict) -> dict:
    from apt_core.config import get_config

    return {**defaults, **get_config().plugin("hf")}


def read_export_config(directory: Path) -> dict:
    """``config.json`` of an exported folder as a dict (APTError when missing or invalid)."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise APTError(f"{directory} has no config.json: not a Hugging Face model folder")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APTError(f"invalid {path}: {exc}") from None
