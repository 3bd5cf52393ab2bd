"""Shared fixtures of the distill tests: a small trained teacher and a small text file."""

from pathlib import Path

import pytest


def _text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))[:60_000]


@pytest.fixture(scope="session")
def distill_text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("distill-data") / "docs.txt"
    path.write_text(_text(), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def distill_teacher(tmp_path_factory) -> Path:
    """A 2-layer APT teacher (byte-level tokenizer) trained for 60 steps: a checkpoint run directory."""
    import torch

    from apt_core import APTConfig, APTModel
    from apt_core.data import tokenize_documents
    from apt_core.plugins import make_plugin_manager
    from apt_core.tokenizer import APTTokenizer
    from apt_core.training import Trainer, TrainingArguments

    torch.manual_seed(0)
    tok = APTTokenizer.byte_level()
    model = APTModel(APTConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=64))
    out = tmp_path_factory.mktemp("distill-teacher") / "run"
    args = TrainingArguments(out_dir=str(out), max_steps=60, batch_size=8, seq_len=32, lr=5e-3, warmup_steps=5,
                             progress=False)
    hook = make_plugin_manager(entry_points=False, plugins=()).hook
    Trainer(model, args, tokenize_documents([_text()], tok), tokenizer=tok, hook=hook).train()
    return out
