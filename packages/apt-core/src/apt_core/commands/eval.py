"""``apt-model eval CKPT``: perplexity on held-out data."""

from __future__ import annotations

import click

__all__ = ["eval_command"]


@click.command("eval")
@click.argument("checkpoint", type=click.Path())
@click.option("--data", "data_spec", default="default:eval", show_default=True, metavar="SPEC",
              help="Data to score: a path, default:eval (the embedded corpus's held-out split) or SCHEME:LOCATION.")
@click.option("--text-field", default="text", show_default=True)
@click.option("--seq-len", type=int, help="Block length (default: the training seq_len, else max_seq_len).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--max-batches", type=click.IntRange(min=0), default=0, show_default=True, help="0 = all.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def eval_command(checkpoint, data_spec, text_field, seq_len, batch_size, max_batches, device, as_json) -> None:
    """Perplexity of CHECKPOINT on --data (non-overlapping blocks, token-weighted)."""
    from apt_core.checkpoint import load_checkpoint
    from apt_core.commands._output import print_json, print_table
    from apt_core.data import iter_documents, tokenize_documents
    from apt_core.errors import APTError
    from apt_core.training import perplexity

    loaded = load_checkpoint(checkpoint, map_location=device)
    if seq_len is None:
        trained = (loaded.trainer_state or {}).get("args", {}).get("seq_len")
        seq_len = trained or loaded.config.max_seq_len
    if not 2 <= seq_len <= loaded.config.max_seq_len:
        raise APTError(f"--seq-len must be between 2 and max_seq_len {loaded.config.max_seq_len}")
    tokens = tokenize_documents(iter_documents(data_spec, text_field=text_field), loaded.tokenizer)
    metrics = perplexity(loaded.model, tokens, seq_len, batch_size=batch_size, max_batches=max_batches, device=device)
    result = {"checkpoint": str(loaded.path), "data": data_spec, "seq_len": seq_len,
              "tokens": int(metrics["eval_tokens"]), "loss": metrics["eval_loss"],
              "perplexity": metrics["eval_perplexity"]}
    if as_json:
        print_json(result)
    else:
        print_table([(k, v) for k, v in result.items()], title="evaluation")
