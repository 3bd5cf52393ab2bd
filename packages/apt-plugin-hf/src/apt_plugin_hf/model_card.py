"""The ``README.md`` model card of an export, built with ``huggingface_hub.ModelCard``.

Everything in it comes from the checkpoint: the config, the parameter count and the metrics and
data recorded in ``trainer_state.json`` (``metrics``, ``eval_history``, ``data``). Nothing is made up:
what the checkpoint does not record is reported as not recorded.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["build_model_card"]


def _training_data(trainer_state: dict | None, dataset: str | None) -> list[str]:
    if dataset:
        return [dataset]
    data = (trainer_state or {}).get("data")
    if isinstance(data, str):
        return [data]
    if isinstance(data, list):
        return [str(d) for d in data]
    return []


def _metrics(trainer_state: dict | None) -> dict[str, float]:
    state = trainer_state or {}
    metrics: dict[str, float] = {}
    for key, value in (state.get("metrics") or {}).items():
        if isinstance(value, (int, float)) and math.isfinite(value):
            metrics[key] = float(value)
    history = state.get("eval_history") or []
    if history and isinstance(history[-1], dict):
        for key, value in history[-1].items():
            if key != "step" and isinstance(value, (int, float)):
                metrics.setdefault(key, float(value))
    return metrics


def _hub_dataset_ids(specs: list[str]) -> list[str]:
    """Hub dataset ids among ``hf:NAME[:CONFIG][:SPLIT]`` specs (local files are not datasets on the Hub)."""
    ids = []
    for spec in specs:
        if spec.startswith("hf:"):
            name = spec[3:].split(":")[0]
            if name.count("/") <= 1 and not name.startswith((".", "/", "~")) and "." not in name.rsplit("/", 1)[-1]:
                ids.append(name)
    return ids


def build_model_card(*, config, num_parameters: int, trainer_state: dict | None, architecture: str,
                     repo_name: str, dataset: str | None = None):
    """A :class:`huggingface_hub.ModelCard` describing an exported APT checkpoint.

    :param architecture: ``"apt"`` (remote code) or ``"llama"`` (stock ``LlamaForCausalLM``).
    """
    from huggingface_hub import ModelCard, ModelCardData

    data_specs = _training_data(trainer_state, dataset)
    metrics = _metrics(trainer_state)
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["apt", "autopoietic-transformer", "causal-lm"] + (["llama"] if architecture == "llama" else []),
        datasets=_hub_dataset_ids(data_specs) or None,
    )
    step = (trainer_state or {}).get("step")
    remote = "" if architecture == "llama" else ", trust_remote_code=True"
    lines = [
        f"# {repo_name}",
        "",
        "An APT (Autopoietic Transformer) causal language model exported from an `apt-model` checkpoint "
        + ("as a plain `LlamaForCausalLM` (APT's own features are off, so no remote code is needed)."
           if architecture == "llama" else
           "with self-contained remote code (`configuration_apt.py`, `modeling_apt.py`)."),
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f"tokenizer = AutoTokenizer.from_pretrained(path{remote})",
        f"model = AutoModelForCausalLM.from_pretrained(path{remote})",
        "```",
        "",
        "## Model",
        "",
        "| | |",
        "|---|---|",
        f"| parameters | {num_parameters:,} |",
        f"| layers | {config.n_layers} |",
        f"| d_model | {config.d_model} |",
        f"| heads | {config.n_heads} |",
        f"| d_ff | {config.d_ff} |",
        f"| vocabulary | {config.vocab_size} |",
        f"| context | {config.max_seq_len} |",
        f"| positions | {config.position_encoding} |",
        f"| autopoietic attention | {'on' if config.autopoietic else 'off'} |",
        f"| left-spin residual | {'on' if config.left_spin else 'off'} |",
        "",
        "## Training",
        "",
        f"Training data: {', '.join(f'`{d}`' for d in data_specs) if data_specs else 'not recorded in the checkpoint'}.",
        f"Steps: {step if step is not None else 'not recorded'}.",
        "",
    ]
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {name} | {_fmt(value)} |" for name, value in sorted(metrics.items())]
    else:
        lines.append("No metrics are recorded in the checkpoint.")
    content = f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"
    return ModelCard(content)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
