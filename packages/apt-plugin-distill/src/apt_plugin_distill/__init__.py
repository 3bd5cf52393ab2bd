"""Knowledge distillation for APT: response, feature and relation losses through the core trainer.

Importing the package is cheap; the public names below load torch on first access.
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "response_loss": "response", "ResponseLoss": "response", "kd_positions": "response",
    "layer_map": "features", "FeatureProjections": "features", "feature_loss": "features",
    "attention_loss": "features", "apt_attention_probs": "features",
    "relation_loss": "relation", "rkd_distance": "relation", "rkd_angle": "relation",
    "sample_token_embeddings": "relation",
    "DistillSettings": "objective", "DistillationModule": "objective", "distill_loss_fn": "objective",
    "METHODS": "objective",
    "student_from_teacher": "student", "student_from_config": "student", "parse_layers": "student",
    "run_distillation": "runner", "DistillResult": "runner",
    "DistillTrainer": "training", "perplexity": "evaluation",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"apt_plugin_distill.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'apt_plugin_distill' has no attribute {name!r}")
