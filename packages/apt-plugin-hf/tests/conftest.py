"""Fixtures for apt-plugin-hf: tiny APT checkpoints, exports, and the Hub-protocol test server.

No Hub server can be installed offline, so the Hub tests drive the real ``huggingface_hub`` client
against ``tests/support/hub_server.py`` (shared with other packages) through ``HF_ENDPOINT``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Before huggingface_hub is imported anywhere: no Xet uploads (the test server speaks LFS), no telemetry,
# and never a developer's token.
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.pop("HF_TOKEN", None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

_SUPPORT = Path(__file__).resolve().parents[3] / "tests" / "support"
if str(_SUPPORT) not in sys.path:
    sys.path.insert(0, str(_SUPPORT))

SAMPLE_DOCS = [
    "ROMEO: But soft, what light through yonder window breaks? It is the east, and Juliet is the sun.",
    "JULIET: O Romeo, Romeo! wherefore art thou Romeo? Deny thy father and refuse thy name.",
    "Two households, both alike in dignity, in fair Verona, where we lay our scene.",
] * 8


def pytest_configure(config):
    # huggingface_hub 2.x passes raw bytes to httpx2 the deprecated way; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:httpx2.*")


@pytest.fixture(autouse=True)
def hf_environment(apt_pm, monkeypatch, tmp_path):
    """Every test: a plugin manager with the core and this plugin, private HF caches, no user config."""
    import apt_plugin_hf.plugin

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-home" / "datasets"))
    monkeypatch.setenv("APT_CONFIG_HOME", str(tmp_path / "apt-config"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setenv("APT_HF__RETRY_BASE_DELAY", "0.01")
    return apt_pm(apt_plugin_hf.plugin)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A running Hub-protocol server; HF_ENDPOINT and HF_TOKEN point the real SDK at it."""
    from hub_server import hub_server
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # in case the SDK was imported before us
    with hub_server(tmp_path / "hub") as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", server.token)
        yield server


def _make_checkpoint(path: Path, *, tokenizer: str = "bpe", seed: int = 0, trainer_state: dict | None = None,
                     **config) -> Path:
    import torch

    from apt_core.checkpoint import save_checkpoint
    from apt_core.model import APTConfig, APTModel
    from apt_core.tokenizer import APTTokenizer

    tok = APTTokenizer.train(SAMPLE_DOCS, vocab_size=300, min_frequency=1) if tokenizer == "bpe" \
        else APTTokenizer.byte_level()
    fields = dict(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=2, d_ff=48, max_seq_len=64)
    fields.update(config)
    torch.manual_seed(seed)
    model = APTModel(APTConfig(**fields))
    with torch.no_grad():  # non-trivial norms, gates and tau, so every parameter matters in the comparison
        for name, param in model.named_parameters():
            if name.endswith("norm.weight") or "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
            elif name.endswith("ap_tau") or name.endswith("ap_gate.bias"):
                param.add_(0.3 * torch.randn_like(param))
    return save_checkpoint(path, model=model, tokenizer=tok, trainer_state=trainer_state)


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory):
    """Factory: ``make_checkpoint(name, tokenizer="bpe"|"byte", **APTConfig fields) -> Path`` (cached by name)."""
    root = tmp_path_factory.mktemp("hf-ckpt")
    made: dict[str, Path] = {}

    def make(name: str, **kwargs) -> Path:
        if name not in made:
            made[name] = _make_checkpoint(root / name, **kwargs)
        return made[name]

    return make


@pytest.fixture(scope="session")
def apt_checkpoint(make_checkpoint) -> Path:
    """The default tiny APT checkpoint: every APT feature on, trained BPE tokenizer, a recorded run."""
    state = {"step": 120, "data": ["hf:wikitext:wikitext-2-raw-v1:train"],
             "metrics": {"loss": 2.5, "eval_loss": 2.75, "eval_perplexity": 15.64}}
    return make_checkpoint("apt", trainer_state=state)


@pytest.fixture(scope="session")
def exported(apt_checkpoint, tmp_path_factory) -> Path:
    """``apt_checkpoint`` exported once for the session (treat as read-only)."""
    from apt_plugin_hf.export import export_checkpoint

    return export_checkpoint(apt_checkpoint, tmp_path_factory.mktemp("hf-export") / "apt-tiny")


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under *root* (relative POSIX path -> bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def folder_bytes():
    return tree_bytes
