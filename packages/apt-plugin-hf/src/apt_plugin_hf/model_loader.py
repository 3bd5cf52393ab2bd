"""The ``hf:`` model loader: any Hugging Face causal LM as a model other plugins can use.

``--model hf:PATH_OR_ID[@REVISION]`` (or ``--teacher``) loads a local folder or a Hub repo with
``AutoModelForCausalLM`` and wraps it so that ``forward(input_ids, attention_mask=None,
output_hidden_states=False)`` returns ``.logits`` and ``.hidden_states`` like an APT model.
APT exports load with this plugin's own bundled classes, so no remote code runs; other architectures
with remote code need ``[plugins.hf] trust_remote_code = true``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apt_core.errors import APTError

__all__ = ["CausalLMResult", "load_hf_causal_lm", "resolve_model_dir"]


@dataclass
class CausalLMResult:
    """What :meth:`HFCausalLM.forward` returns."""

    logits: Any
    hidden_states: tuple | None = None


def _make_wrapper_class():
    import torch

    class HFCausalLM(torch.nn.Module):
        """A transformers causal LM behind the APT model-loader interface."""

        def __init__(self, model) -> None:
            super().__init__()
            self.model = model
            self.config = model.config

        @property
        def vocab_size(self) -> int:
            return int(self.model.get_output_embeddings().weight.shape[0]) if self.model.get_output_embeddings() \
                is not None else int(self.config.vocab_size)

        @property
        def device(self) -> torch.device:
            return next(self.model.parameters()).device

        def forward(self, input_ids, attention_mask=None, output_hidden_states: bool = False) -> CausalLMResult:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                             output_hidden_states=output_hidden_states, use_cache=False)
            return CausalLMResult(logits=out.logits, hidden_states=out.hidden_states if output_hidden_states else None)

    return HFCausalLM


_WRAPPER = None


def _wrapper_class():
    # Built on first use so that importing this module does not import torch.
    global _WRAPPER
    if _WRAPPER is None:
        _WRAPPER = _make_wrapper_class()
    return _WRAPPER


def __getattr__(name: str):
    if name == "HFCausalLM":
        return _wrapper_class()
    raise AttributeError(name)


def resolve_model_dir(location: str) -> Path:
    """A local folder for ``PATH`` or ``REPO_ID[@REVISION]`` (Hub repos are downloaded into the HF cache)."""
    from .hub import endpoint, hub_errors, looks_like_repo_id, with_retries

    path = Path(location).expanduser()
    if path.is_dir():
        return path
    repo_id, _, revision = location.partition("@")
    if not looks_like_repo_id(repo_id):
        raise APTError(f"hf model {location!r} is neither a folder nor a Hub repo id")
    from huggingface_hub import snapshot_download

    from .hub import hub_api

    api = hub_api()
    with hub_errors("download", repo_id, revision or None):
        sha = with_retries(lambda: api.repo_info(repo_id, revision=revision or None).sha, what=f"look up {repo_id}")
        folder = with_retries(lambda: snapshot_download(repo_id, revision=sha, endpoint=endpoint()),
                              what=f"download {repo_id}")
    return Path(folder)


def load_hf_causal_lm(location: str):
    """The model loader registered as ``hf``: returns an :class:`HFCausalLM` in eval mode."""
    from apt_core.config import get_config

    directory = resolve_model_dir(location)
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise APTError(f"{directory} has no config.json: not a Hugging Face model folder")
    model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    try:
        if model_type == "apt":
            from .remote.modeling_apt import APTForCausalLM

            model = APTForCausalLM.from_pretrained(str(directory))
        else:
            from transformers import AutoModelForCausalLM

            trust = bool(get_config().plugin("hf").get("trust_remote_code", False))
            model = AutoModelForCausalLM.from_pretrained(str(directory), trust_remote_code=trust)
    except (OSError, ValueError, KeyError) as exc:
        raise APTError(f"cannot load {location} with transformers: {str(exc).splitlines()[0]}") from None
    model.eval()
    return _wrapper_class()(model)
