"""Import a Hugging Face folder (or Hub repo) back into an APT checkpoint.

Accepted: an ``apt`` export (``model_type "apt"``: a pure renaming back, so export -> import gives the
original tensors bit for bit) and a ``llama`` model whose architecture APT can express (APT features
off: no GQA, no biases, default RoPE) with an APT tokenizer (``<pad> <unk> <bos> <eos>`` at ids 0-3).
Any other causal LM can still be *used* (e.g. as a distillation teacher) through ``--model hf:SRC``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from apt_core.errors import APTError

__all__ = ["import_model", "load_apt_from_hf_dir"]


def load_apt_from_hf_dir(directory: Path):
    """``(APTModel, APTTokenizer)`` from an exported folder."""
    from apt_core.model import APTModel
    from apt_core.tokenizer import APTTokenizer

    from .convert import hf_to_apt_config, hf_to_apt_state, llama_to_apt_config, llama_to_apt_state
    from .export import read_export_config
    from .weights import read_weights

    data = read_export_config(directory)
    model_type = data.get("model_type")
    if model_type == "apt":
        config = hf_to_apt_config(data)
        state = hf_to_apt_state(read_weights(directory), config.tie_embeddings)
    elif model_type == "llama":
        config = llama_to_apt_config(data)
        state = llama_to_apt_state(read_weights(directory), config)
    else:
        raise APTError(f"cannot import model_type {model_type!r} as an APT checkpoint (apt and llama can be); "
                       f"use it directly with --model hf:{directory}")
    model = APTModel(config)
    # Exact copy of the stored tensors: load_weights checks names and shapes, then copies bit for bit.
    model.load_weights(state, source=directory)
    try:
        tokenizer = APTTokenizer.from_pretrained(directory)
    except APTError as exc:
        raise APTError(f"cannot import {directory}: {exc}") from None
    return model, tokenizer


def import_model(src: str, out: str | Path, *, revision: str | None = None, overwrite: bool = False) -> Path:
    """Write an APT checkpoint at *out* from *src*: an exported folder or a Hub repo id."""
    from apt_core.checkpoint import save_checkpoint

    from .hub import download_snapshot, looks_like_repo_id
    from .staging import check_target

    out = Path(out)
    check_target(out, overwrite)
    source = Path(src).expanduser()
    if source.is_dir():
        model, tokenizer = load_apt_from_hf_dir(source)
        origin = str(source)
    elif looks_like_repo_id(src):
        with tempfile.TemporaryDirectory(prefix="apt-hf-import-") as tmp:
            sha = download_snapshot(src, Path(tmp), revision=revision)
            model, tokenizer = load_apt_from_hf_dir(Path(tmp))
        origin = f"hf://{src}@{sha}"
    else:
        raise APTError(f"{src} is neither a folder nor a Hub repo id")
    state = {"step": 0, "imported_from": origin}
    save_checkpoint(out, model=model, tokenizer=tokenizer, trainer_state=state)
    return out
