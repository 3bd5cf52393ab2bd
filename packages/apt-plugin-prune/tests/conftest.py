"""Fixtures for the prune plugin's tests: tiny models, a small text corpus, tiny checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
from prune_testutils import make_model


@pytest.fixture(scope="session")
def prune_text(tmp_path_factory) -> Path:
    """~60 KB of English text (CPython's own help topics: always installed, no download)."""
    from pydoc_data.topics import topics

    path = tmp_path_factory.mktemp("prune-data") / "text.txt"
    path.write_text("".join(topics[k] for k in sorted(topics))[:60_000], encoding="utf-8")
    return path


@pytest.fixture
def prune_checkpoint_dir(tmp_path) -> Path:
    """A small APT checkpoint with a byte-level tokenizer (written fresh for each test)."""
    from apt_core.checkpoint import save_checkpoint
    from apt_core.tokenizer import APTTokenizer

    tokenizer = APTTokenizer.byte_level()
    model = make_model(vocab_size=tokenizer.vocab_size)
    return save_checkpoint(tmp_path / "source", model, tokenizer)


@pytest.fixture
def calib_batches():
    import torch

    generator = torch.Generator().manual_seed(1)
    return [torch.randint(0, 260, (2, 16), generator=generator) for _ in range(2)]
