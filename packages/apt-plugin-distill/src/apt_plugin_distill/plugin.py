"""Entry point of the ``distill`` plugin: hook implementations only, no heavy imports at module level."""

from __future__ import annotations

from apt_core import hookimpl

__all__ = ["APT_API_VERSION", "apt_register_commands", "apt_register_config", "CONFIG_DEFAULTS"]

APT_API_VERSION = 1

#: ``[plugins.distill]`` defaults; command-line flags override them. Temperature 1 and alpha 0.9 are
#: what worked best on our benchmark (bench/bench_distill.py): T = 4 made the student *worse* than plain
#: training there, and RKD at weight 1 dominated the clipped gradient (see the package README).
CONFIG_DEFAULTS = {
    "method": "response",
    "temperature": 1.0,
    "alpha": 0.9,
    "kl": "forward",
    "feature_weight": 1.0,
    "relation_weight": 0.1,
    "attention_weight": 0.0,
    "relation_samples": 64,
    "chunk_tokens": 2048,
}


def _validate(values: dict) -> dict:
    # DistillSettings validates without torch: objective.py imports torch, so check by hand here.
    from apt_core.errors import APTError

    methods = ("response", "feature", "relation", "combined")
    if values["method"] not in methods:
        raise APTError(f"plugins.distill.method must be one of {', '.join(methods)}, got {values['method']!r}")
    if values["kl"] not in ("forward", "reverse"):
        raise APTError(f"plugins.distill.kl must be forward or reverse, got {values['kl']!r}")
    if not 0.0 <= float(values["alpha"]) <= 1.0:
        raise APTError(f"plugins.distill.alpha must be in [0, 1], got {values['alpha']}")
    if not float(values["temperature"]) > 0:
        raise APTError(f"plugins.distill.temperature must be positive, got {values['temperature']}")
    for key in ("feature_weight", "relation_weight", "attention_weight"):
        if float(values[key]) < 0:
            raise APTError(f"plugins.distill.{key} must be >= 0, got {values[key]}")
    if int(values["relation_samples"]) < 3:
        raise APTError("plugins.distill.relation_samples must be at least 3")
    if int(values["chunk_tokens"]) < 1:
        raise APTError("plugins.distill.chunk_tokens must be positive")
    return values


@hookimpl
def apt_register_config(register):
    register("distill", dict(CONFIG_DEFAULTS), _validate)


@hookimpl
def apt_register_commands(cli):
    from .command import distill_command  # click only; torch loads inside the command body

    cli.add_command(distill_command)
