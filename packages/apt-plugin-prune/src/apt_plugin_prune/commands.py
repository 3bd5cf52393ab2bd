"""The ``apt-model prune`` command group.

``apt-model prune CKPT --out DIR ...`` prunes (the group's default action); ``lottery``, ``stats`` and
``sweep`` are subcommands. Only click is imported here; torch and the pruning modules load inside
the command bodies.
"""

from __future__ import annotations

import json

import click

from apt_plugin_prune.options import DEFAULT_KD_ALPHA, DEFAULT_KD_TEMPERATURE, DEFAULT_RECOVERY

__all__ = ["prune", "PruneGroup", "CONFIG_DEFAULTS", "validate_config"]

#: ``[plugins.prune]`` settings and their defaults (CLI flags override them).
CONFIG_DEFAULTS = {
    "method": "magnitude",
    "scope": "layer",
    "round_to": 8,
    "ffn_engine": "torch-pruning",
    "calibration_data": "default",
    "calibration_batches": 8,
    "batch_size": 8,
    "seq_len": 128,
    "lr": 3e-4,
    "eval_batches": 20,
    "seed": 0,
    "recover": DEFAULT_RECOVERY,
    "kd_alpha": DEFAULT_KD_ALPHA,
    "kd_temperature": DEFAULT_KD_TEMPERATURE,
}


def validate_config(values: dict) -> dict:
    """Check a merged ``[plugins.prune]`` section (one clear APTError per bad value)."""
    from apt_core.errors import APTError
    from apt_plugin_prune.options import (
        check_kd_alpha,
        check_kd_temperature,
        check_method,
        check_recovery,
        check_scope,
    )

    check_method(values["method"])
    check_scope(values["scope"])
    check_recovery(values["recover"])
    check_kd_alpha(values["kd_alpha"], "plugins.prune.kd_alpha")
    check_kd_temperature(values["kd_temperature"], "plugins.prune.kd_temperature")
    if values["ffn_engine"] not in ("torch-pruning", "slice"):
        raise APTError(f"plugins.prune.ffn_engine must be torch-pruning or slice, got {values['ffn_engine']!r}")
    for key in ("round_to", "calibration_batches", "batch_size", "seq_len"):
        if values[key] < 1:
            raise APTError(f"plugins.prune.{key} must be >= 1, got {values[key]}")
    if values["eval_batches"] < 0 or not values["lr"] > 0:
        raise APTError("plugins.prune.eval_batches must be >= 0 and lr > 0")
    return values


def _settings(**given):
    """Config section values overridden by the CLI flags that were given."""
    from apt_core.config import get_config

    merged = dict(CONFIG_DEFAULTS)
    merged.update(get_config().plugin("prune") or {})
    merged.update({k: v for k, v in given.items() if v is not None})
    return merged


class PruneGroup(click.Group):
    """A group whose default action is the pruning command itself: ``apt-model prune CKPT ...``."""

    DEFAULT = "model"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.DEFAULT, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "CKPT --out DIR [OPTIONS] | lottery | stats | sweep ...")


def _common(func):
    """Options shared by the pruning command and the sweep."""
    options = [
        click.option("--method", type=click.Choice(["magnitude", "taylor", "wanda", "random"]), default=None,
                     help="Importance criterion (default: config, magnitude). random is the control."),
        click.option("--structured", default=None, metavar="heads,ffn,rank",
                     help="Remove whole heads / FFN channels / autopoietic rank (tensors shrink). "
                          "Without it: unstructured zeros."),
        click.option("--scope", type=click.Choice(["layer", "global"]), default=None,
                     help="layer: every tensor/layer loses the same fraction; global: one threshold."),
        click.option("--nm", default=None, metavar="N:M", help="Unstructured N:M pattern, e.g. 2:4 (sparsity 1-N/M)."),
        click.option("--include-embeddings", is_flag=True, help="Also prune the token embedding (= tied LM head)."),
        click.option("--round-to", type=int, default=None, help="Structured: kept FFN widths a multiple of this (8)."),
        click.option("--ffn-engine", type=click.Choice(["torch-pruning", "slice"]), default=None,
                     help="Structured FFN engine: torch-pruning DepGraph (default) or direct slicing."),
        click.option("--data", default=None, help="Calibration / fine-tuning data (--data spec, default: embedded corpus)."),
        click.option("--eval-data", default=None, help="Held-out data for perplexity (default: split of --data)."),
        click.option("--calibration-batches", type=int, default=None, help="Batches for taylor/wanda statistics."),
        click.option("--batch-size", type=int, default=None),
        click.option("--seq-len", type=int, default=None),
        click.option("--lr", type=float, default=None, help="Fine-tuning learning rate."),
        click.option("--recover", type=click.Choice(["kd", "ce"]), default=None,
                     help="How fine-tuning recovers: kd = distil from the unpruned model, ce = plain "
                          f"next-token training (default: config, {DEFAULT_RECOVERY})."),
        click.option("--kd-alpha", default=None, metavar="A",
                     help="kd: weight of the distillation term in [0, 1]; 1 - A weighs next-token CE "
                          f"(default {DEFAULT_KD_ALPHA:g})."),
        click.option("--kd-temperature", default=None, metavar="T",
                     help=f"kd: softmax temperature > 0 (default {DEFAULT_KD_TEMPERATURE:g})."),
        click.option("--eval-batches", type=int, default=None, help="Perplexity on at most this many batches (0: skip)."),
        click.option("--seed", type=int, default=None),
        click.option("--device", default="auto", help="auto, cpu, cuda, cuda:1 ..."),
        click.option("--no-progress", is_flag=True, help="No progress bars."),
        click.option("--json", "as_json", is_flag=True, help="Print the report as JSON."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _prune_settings(method, structured, scope, nm, include_embeddings, round_to, ffn_engine, data,
                    calibration_batches, batch_size, seq_len, seed, sparsity, lr, eval_batches,
                    recover=None, kd_alpha=None, kd_temperature=None):
    """(PruneSettings, merged config values) from the CLI flags over the ``[plugins.prune]`` section.

    ``cfg["recovery"]`` is the :class:`~apt_plugin_prune.recovery.Recovery` of the fine-tuning steps.
    """
    from apt_plugin_prune.options import check_kd_alpha, check_kd_temperature, parse_nm, parse_structured
    from apt_plugin_prune.pruning import PruneSettings
    from apt_plugin_prune.recovery import Recovery

    # Flags are checked under their own names (the config section's values by validate_config).
    kd_alpha = None if kd_alpha is None else check_kd_alpha(kd_alpha)
    kd_temperature = None if kd_temperature is None else check_kd_temperature(kd_temperature)
    cfg = _settings(method=method, scope=scope, round_to=round_to, ffn_engine=ffn_engine, calibration_data=data,
                    calibration_batches=calibration_batches, batch_size=batch_size, seq_len=seq_len, seed=seed,
                    lr=lr, eval_batches=eval_batches, recover=recover, kd_alpha=kd_alpha,
                    kd_temperature=kd_temperature)
    cfg["recovery"] = Recovery(cfg["recover"], cfg["kd_alpha"], cfg["kd_temperature"])
    settings = PruneSettings(method=cfg["method"], sparsity=sparsity, structured=parse_structured(structured),
                             scope=cfg["scope"], nm=parse_nm(nm), include_embeddings=include_embeddings,
                             round_to=cfg["round_to"], calibration_data=cfg["calibration_data"],
                             calibration_batches=cfg["calibration_batches"], batch_size=cfg["batch_size"],
                             seq_len=cfg["seq_len"], seed=cfg["seed"], ffn_engine=cfg["ffn_engine"])
    return settings, cfg


@click.group(cls=PruneGroup, invoke_without_command=False, context_settings={"help_option_names": ["-h", "--help"]})
def prune() -> None:
    """Prune APT models: unstructured zeros or structurally smaller models, lottery tickets, statistics.

    \b
    apt-model prune CKPT --method magnitude --sparsity 0.5 --out DIR
    apt-model prune CKPT --structured heads,ffn --sparsity 0.5 --finetune-steps 200 --out DIR
    apt-model prune lottery CKPT --rounds 3 --rate 0.2 --steps 200 --out DIR
    apt-model prune stats CKPT
    apt-model prune sweep CKPT --sparsities 0.3,0.5,0.7,0.9 --out DIR
    """


@prune.command(name=PruneGroup.DEFAULT, hidden=True)
@click.argument("checkpoint", type=click.Path())
@click.option("--sparsity", default="0.5", show_default=True,
              help="Fraction removed: of the weights (unstructured) or of heads/channels (structured), in [0, 1).")
@click.option("--finetune-steps", type=int, default=0, show_default=True,
              help="Recovery training steps through the core trainer (masks kept).")
@click.option("--out", required=True, type=click.Path(), help="New run directory (checkpoint-N/ + latest + report).")
@click.option("--latency-reps", type=int, default=10, show_default=True,
              help="Time the CPU forward pass of dense and pruned models this many times (0: skip).")
@_common
def prune_model_command(checkpoint, sparsity, finetune_steps, out, latency_reps, method, structured, scope, nm, include_embeddings,
                        round_to, ffn_engine, data, eval_data, calibration_batches, batch_size, seq_len, lr,
                        recover, kd_alpha, kd_temperature, eval_batches, seed, device, no_progress, as_json):
    """Prune CHECKPOINT and write the result to --out (an ordinary APT checkpoint)."""
    from apt_plugin_prune.options import check_sparsity
    from apt_plugin_prune.pruning import prune_checkpoint
    from apt_plugin_prune.stats import format_report

    settings, cfg = _prune_settings(method, structured, scope, nm, include_embeddings, round_to, ffn_engine, data,
                                    calibration_batches, batch_size, seq_len, seed, check_sparsity(sparsity),
                                    lr, eval_batches, recover, kd_alpha, kd_temperature)
    report = prune_checkpoint(checkpoint, out, settings, finetune_steps=finetune_steps, data=cfg["calibration_data"],
                              eval_data=eval_data, lr=cfg["lr"], eval_batches=cfg["eval_batches"], device=device,
                              progress=not no_progress, latency_reps=latency_reps, recovery=cfg["recovery"])
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    click.echo(format_report(report["stats"]))
    click.echo("")
    kind = ",".join(settings.structured) or ("N:M" if settings.nm else "unstructured")
    click.echo(f"pruned {kind} with {settings.method} at sparsity {settings.sparsity:g}: "
               f"{report['dense']['parameters']:,} -> {report['pruned']['parameters']:,} parameters")
    mb = 1e6
    click.echo(f"model.safetensors: {report['dense']['weights_file_bytes'] / mb:.2f} MB -> "
               f"{report['pruned']['weights_file_bytes'] / mb:.2f} MB")
    if "latency" in report:
        lat = report["latency"]
        click.echo(f"CPU forward latency (batch {lat['batch'][0]}x{lat['batch'][1]}): {lat['dense_ms']:.1f} ms -> "
                   f"{lat['pruned_ms']:.1f} ms ({lat['speedup']:.2f}x)")
    if "recovery" in report:
        rec = report["recovery"]
        how = (f"distillation from the unpruned model (alpha {rec['alpha']:g}, temperature {rec['temperature']:g})"
               if rec["mode"] == "kd" else "next-token cross-entropy")
        click.echo(f"recovery: {finetune_steps} steps of {how}")
    for stage in ("dense", "pruned", "finetuned"):
        if report.get(stage, {}).get("perplexity") is not None:
            click.echo(f"perplexity {stage + ':':<11}{report[stage]['perplexity']:.2f}")
    click.echo(f"saved: {report['checkpoint']}")


@prune.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats(checkpoint, as_json):
    """Sparsity (global and per layer, with denominators), parameter count, size on disk."""
    from apt_core.checkpoint import load_checkpoint
    from apt_plugin_prune.stats import format_report, sparsity_report

    ckpt = load_checkpoint(checkpoint, require_tokenizer=False)
    report = sparsity_report(ckpt.model, ckpt.path)
    report["checkpoint"] = str(ckpt.path)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@prune.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--sparsities", default="0.3,0.5,0.7,0.9", show_default=True, help="Comma-separated, each in [0, 1).")
@click.option("--finetune-steps", type=int, default=0, show_default=True, help="Recovery steps at each sparsity.")
@click.option("--out", default="prune-sweep", show_default=True, type=click.Path(),
              help="New directory for sweep.json and sweep.png.")
@_common
def sweep(checkpoint, sparsities, finetune_steps, out, method, structured, scope, nm, include_embeddings, round_to,
          ffn_engine, data, eval_data, calibration_batches, batch_size, seq_len, lr, recover, kd_alpha,
          kd_temperature, eval_batches, seed, device, no_progress, as_json):
    """Perplexity at several sparsities: a table, sweep.json and a PNG plot."""
    from apt_core.errors import APTError
    from apt_plugin_prune.options import parse_sparsities
    from apt_plugin_prune.sweep import format_sweep, run_sweep

    if nm:
        raise APTError("--nm fixes the sparsity, so it cannot be swept")
    values = parse_sparsities(sparsities)
    settings, cfg = _prune_settings(method, structured, scope, nm, include_embeddings, round_to, ffn_engine, data,
                                    calibration_batches, batch_size, seq_len, seed, values[0], lr, eval_batches,
                                    recover, kd_alpha, kd_temperature)
    result = run_sweep(checkpoint, out, values, settings, finetune_steps=finetune_steps,
                       data=settings.calibration_data, eval_data=eval_data, lr=cfg["lr"],
                       eval_batches=cfg["eval_batches"] or 20, device=device, progress=not no_progress,
                       recovery=cfg["recovery"])
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(format_sweep(result))
    click.echo(f"plot: {result['plot']}" if result["plot"] else "plot: skipped (matplotlib not installed)")


@prune.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--rounds", type=int, default=3, show_default=True, help="IMP rounds.")
@click.option("--rate", default="0.2", show_default=True, help="Fraction of the remaining weights pruned per round.")
@click.option("--steps", type=int, default=200, show_default=True, help="Training steps per round (minus --rewind-step).")
@click.option("--rewind-step", type=int, default=0, show_default=True, help="Rewind to θ_k (0 = θ₀, the checkpoint).")
@click.option("--scope", type=click.Choice(["layer", "global"]), default="global", show_default=True)
@click.option("--include-embeddings", is_flag=True)
@click.option("--no-controls", is_flag=True, help="Skip the random re-init and random mask controls.")
@click.option("--data", default=None)
@click.option("--eval-data", default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--seq-len", type=int, default=None)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--eval-batches", type=int, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--device", default="auto")
@click.option("--no-progress", is_flag=True)
@click.option("--out", required=True, type=click.Path(), help="New directory for the rounds, controls and report.")
@click.option("--json", "as_json", is_flag=True)
def lottery(checkpoint, rounds, rate, steps, rewind_step, scope, include_embeddings, no_controls, data, eval_data,
            batch_size, seq_len, lr, eval_batches, seed, device, no_progress, out, as_json):
    """Lottery ticket: iterative magnitude pruning with rewinding to θ₀/θ_k, plus controls.

    The weights of CHECKPOINT are θ₀ (e.g. an untrained `apt-model train --max-steps 0` checkpoint).
    """
    from apt_plugin_prune.lottery import LotterySettings, run_lottery

    cfg = _settings(batch_size=batch_size, seq_len=seq_len, eval_batches=eval_batches, seed=seed, calibration_data=data)
    settings = LotterySettings(rounds=rounds, rate=rate, steps=steps,
                               rewind_step=rewind_step, scope=scope, include_embeddings=include_embeddings,
                               controls=not no_controls, lr=lr, batch_size=cfg["batch_size"], seq_len=cfg["seq_len"],
                               seed=cfg["seed"], eval_batches=cfg["eval_batches"] or 20)
    report = run_lottery(checkpoint, out, settings, data=cfg["calibration_data"], eval_data=eval_data, device=device,
                         progress=not no_progress)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    click.echo(f"{'run':<22}{'sparsity':>9}  {'perplexity':>10}")
    click.echo(f"{'dense':<22}{0.0:>9.2%}  {report['dense']['perplexity']:>10.2f}")
    for row in report["rounds"]:
        click.echo(f"{'round ' + str(row['round']):<22}{row['sparsity']:>9.2%}  {row['perplexity']:>10.2f}")
    final = report["rounds"][-1]["sparsity"]
    for key, label in (("control_reinit", "control: random init"), ("control_random_mask", "control: random mask")):
        if key in report:
            click.echo(f"{label:<22}{final:>9.2%}  {report[key]['perplexity']:>10.2f}")
    click.echo(f"ticket: {report['ticket']}")

