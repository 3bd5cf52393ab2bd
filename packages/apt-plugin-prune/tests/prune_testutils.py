"""Helpers shared by the prune tests (a uniquely named module: all packages' tests share one process)."""

from __future__ import annotations

__all__ = ["make_model"]


def make_model(seed: int = 0, **overrides):
    """A small APT model with non-trivial weights (so every importance criterion differs)."""
    import torch

    from apt_core.model import APTConfig, APTModel

    # alpha 1 (not 0.1) so the autopoietic path weighs enough for equivalence tests to be sharp.
    fields = dict(vocab_size=260, d_model=64, n_layers=2, n_heads=4, d_ff=96, max_seq_len=64, autopoietic_alpha=1.0)
    fields.update(overrides)
    torch.manual_seed(seed)
    model = APTModel(APTConfig(**fields))
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.1)  # wider than the init, so heads/channels differ clearly in magnitude
    return model.eval()
