"""``apt-model generate CKPT PROMPT``: continue a prompt with a trained model."""

from __future__ import annotations

import click

__all__ = ["generate"]


@click.command()
@click.argument("checkpoint", type=click.Path())
@click.argument("prompt")
@click.option("--max-new-tokens", type=click.IntRange(min=0), default=200, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0.0), default=0.8, show_default=True,
              help="0 = greedy decoding.")
@click.option("--top-k", type=click.IntRange(min=0), default=50, show_default=True, help="0 = off.")
@click.option("--top-p", type=click.FloatRange(min=0.0, max=1.0, min_open=True), default=1.0, show_default=True)
@click.option("--repetition-penalty", type=click.FloatRange(min=0.0, min_open=True), default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print prompt, completion and token counts as JSON.")
def generate(checkpoint, prompt, max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed, device,
             as_json) -> None:
    """Generate text from CHECKPOINT (a checkpoint or run directory) after PROMPT."""
    import torch

    from apt_core.checkpoint import load_checkpoint
    from apt_core.commands._output import print_json
    from apt_core.errors import APTError

    loaded = load_checkpoint(checkpoint, map_location=device)
    tokenizer, model = loaded.tokenizer, loaded.model
    ids = tokenizer.encode(prompt)
    if not ids:
        raise APTError("the prompt is empty")
    generator = torch.Generator(device=model.device).manual_seed(seed)
    out = model.generate(torch.tensor(ids, dtype=torch.long), max_new_tokens=max_new_tokens,
                         temperature=temperature, top_k=top_k or None, top_p=top_p if top_p < 1.0 else None,
                         repetition_penalty=repetition_penalty, eos_token_id=tokenizer.eos_id, generator=generator)
    new_ids = out[len(ids):].tolist()
    completion = tokenizer.decode(new_ids)
    if as_json:
        print_json({"checkpoint": str(loaded.path), "prompt": prompt, "completion": completion,
                    "text": prompt + completion, "prompt_tokens": len(ids), "new_tokens": len(new_ids)})
    else:
        click.echo(prompt + completion)
