"""``apt-model info CKPT``: configuration, parameter count, sparsity and size on disk."""

from __future__ import annotations

import click

__all__ = ["info", "checkpoint_info"]


def checkpoint_info(path) -> dict:
    """Facts about a checkpoint as a JSON-ready dict (also used by plugins' reports).

    Sparsity counts exact zeros. ``weight_sparsity`` covers the weight matrices (every tensor with
    2+ dimensions: embedding, projections, FFN, autopoietic U/V/gate) -- what pruning targets;
    ``parameter_sparsity`` covers every parameter including norm gains and biases.
    """
    import torch

    from apt_core.checkpoint import load_checkpoint

    loaded = load_checkpoint(path, require_tokenizer=False)
    model, config = loaded.model, loaded.config
    zeros_w = total_w = zeros_all = total_all = 0
    per_layer = []
    for index, layer in enumerate(model.layers):
        z = n = 0
        for p in layer.parameters():
            if p.dim() >= 2:
                z += int((p == 0).sum())
                n += p.numel()
        per_layer.append({"layer": index, "n_heads": layer.attn.n_heads, "d_ff": layer.ffn.w1.out_features,
                          "weight_sparsity": z / n if n else 0.0})
    with torch.no_grad():
        for p in model.parameters():
            zeros = int((p == 0).sum())
            zeros_all += zeros
            total_all += p.numel()
            if p.dim() >= 2:
                zeros_w += zeros
                total_w += p.numel()
    files = {f.name: f.stat().st_size for f in sorted(loaded.path.iterdir()) if f.is_file()}
    state = loaded.trainer_state or {}
    return {
        "checkpoint": str(loaded.path),
        "parameters": model.num_parameters(),
        "weight_sparsity": zeros_w / total_w if total_w else 0.0,
        "parameter_sparsity": zeros_all / total_all if total_all else 0.0,
        "size_on_disk": sum(files.values()),
        "files": files,
        "tokenizer_vocab_size": loaded.tokenizer.vocab_size if loaded.tokenizer else None,
        "step": state.get("step"),
        "metrics": state.get("metrics", {}),
        "layers": per_layer,
        "config": config.to_dict(),
    }


@click.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--json", "as_json", is_flag=True)
def info(checkpoint, as_json) -> None:
    """Show CHECKPOINT's configuration, parameters, sparsity and size on disk."""
    from apt_core.commands._output import human_bytes, print_json, print_table

    data = checkpoint_info(checkpoint)
    if as_json:
        print_json(data)
        return
    cfg = data["config"]
    heads = sorted({layer["n_heads"] for layer in data["layers"]})
    widths = sorted({layer["d_ff"] for layer in data["layers"]})
    rows = [
        ("checkpoint", data["checkpoint"]),
        ("parameters", data["parameters"]),
        ("layers x d_model", f"{cfg['n_layers']} x {cfg['d_model']}"),
        ("heads per layer", "/".join(str(layer["n_heads"]) for layer in data["layers"]) if len(heads) > 1 else heads[0]),
        ("d_ff per layer", "/".join(str(layer["d_ff"]) for layer in data["layers"]) if len(widths) > 1 else widths[0]),
        ("vocab size", cfg["vocab_size"]),
        ("max_seq_len", cfg["max_seq_len"]),
        ("positions / norm", f"{cfg['position_encoding']} / {cfg['norm_placement']}-norm"),
        ("autopoietic / left-spin", f"{cfg['autopoietic']} / {cfg['left_spin']}"),
        ("weight sparsity (matrices)", f"{100 * data['weight_sparsity']:.2f}%"),
        ("sparsity (all parameters)", f"{100 * data['parameter_sparsity']:.2f}%"),
        ("size on disk", human_bytes(data["size_on_disk"])),
        ("tokenizer", f"{data['tokenizer_vocab_size']} tokens" if data["tokenizer_vocab_size"] else "missing"),
    ]
    if data["step"] is not None:
        rows.append(("trained steps", data["step"]))
    for key in ("eval_perplexity", "eval_loss", "loss"):
        if key in data["metrics"]:
            rows.append((key.replace("_", " "), data["metrics"][key]))
    print_table(rows, title="APT checkpoint")
