"""``apt-model hf check``: prove an export works in stock transformers.

Loads the folder with ``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`` and
``AutoTokenizer`` exactly as a user of the Hub would, then compares against APT itself (the original
checkpoint when given, else the folder's weights loaded into ``apt_core.APTModel``): token ids and
text round trip, logits (max abs difference) and greedy generations.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["check_export", "SAMPLE_TEXT"]

SAMPLE_TEXT = ("ROMEO: But soft, what light through yonder window breaks?\n"
               "It is the east, and Juliet is the sun. — «ça va?» 1234\n")


def check_export(folder: str | Path, checkpoint: str | Path | None = None, *, text: str = SAMPLE_TEXT,
                 tolerance: float = 1e-5, max_new_tokens: int = 16) -> dict:
    """Compare the exported *folder* (through transformers) with APT; returns the measurements and ``passed``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from apt_core.checkpoint import load_checkpoint

    from .importer import load_apt_from_hf_dir

    folder = Path(folder)
    if checkpoint is not None:
        loaded = load_checkpoint(checkpoint)
        apt_model, apt_tok = loaded.model, loaded.tokenizer
    else:
        apt_model, apt_tok = load_apt_from_hf_dir(folder)
    hf_model = AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=True, dtype=torch.float32)
    # AutoTokenizer reads config.json through AutoConfig, which asks before running the folder's code.
    hf_tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)
    apt_model = apt_model.float().eval()
    hf_model.eval()

    apt_ids = apt_tok.encode(text)
    hf_ids = hf_tok.encode(text, add_special_tokens=False, verbose=False)
    window = apt_model.config.max_seq_len
    ids = torch.tensor([apt_ids[: max(1, window)]])
    with torch.no_grad():
        apt_logits = apt_model(ids).logits
        hf_logits = hf_model(ids).logits
        max_diff = float((apt_logits - hf_logits).abs().max())
        prompt_len = max(1, min(len(apt_ids), window - max_new_tokens, 8))
        prompt = ids[:, :prompt_len]
        new = max(0, min(max_new_tokens, window - prompt_len))
        apt_gen = apt_model.generate(prompt, max_new_tokens=new, temperature=0)
        hf_gen = hf_model.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False)
    result = {
        "folder": str(folder),
        "reference": str(checkpoint) if checkpoint is not None else "folder weights in apt_core",
        "architecture": type(hf_model).__name__,
        "tokens": len(apt_ids),
        "tokens_equal": apt_ids == hf_ids,
        "text_roundtrip": hf_tok.decode(hf_ids) == text,
        "max_abs_logit_diff": max_diff,
        "greedy_tokens": new,
        "greedy_equal": apt_gen.tolist() == hf_gen.tolist(),
    }
    result["passed"] = bool(result["tokens_equal"] and result["text_roundtrip"] and max_diff < tolerance
                            and result["greedy_equal"])
    return result
