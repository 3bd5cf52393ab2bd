"""Helpers shared by the cloud tests (a module with a unique name, so it cannot clash with other packages' tests)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["MB", "write_checkpoint", "tree_bytes", "OSS_KEY_ID", "OSS_SECRET", "HF_USER", "HF_TOKEN_VALUE",
           "MS_USER", "MS_TOKEN"]

MB = 1024 * 1024
# Credentials of the loopback test servers (not real accounts).
OSS_KEY_ID, OSS_SECRET = "LTAI5tAPTTESTKEY0001", "apt-oss-secret-0123456789abcdef"
HF_USER, HF_TOKEN_VALUE = "apt-tester", "hf_aptTestToken0123456789abcdef"
MS_USER, MS_TOKEN = "apt-tester", "ms-apt-test-token-0123456789abcdef"


def write_checkpoint(path: Path, seed: int = 0, model_mb: float = 3.0) -> Path:
    """A checkpoint-shaped directory: JSON files plus a random 'tensor' file of *model_mb* MB."""
    import random

    rng = random.Random(seed)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"model_type": "apt", "d_model": 64, "n_layers": 2}\n')
    (path / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE"}}\n')
    (path / "trainer_state.json").write_text('{"step": 10, "epoch": 0}\n')
    (path / "model.safetensors").write_bytes(rng.randbytes(int(model_mb * MB)))
    (path / "optimizer.safetensors").write_bytes(rng.randbytes(int(model_mb * MB // 2)))
    (path / "sub").mkdir(exist_ok=True)
    (path / "sub" / "empty.bin").write_bytes(b"")
    return path


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
