"""Entry point of the ``prune`` plugin: hook implementations only, no heavy imports at module level."""

from apt_core import hookimpl

APT_API_VERSION = 1


@hookimpl
def apt_register_commands(cli):
    """Add the ``apt-model prune`` group (its bodies import torch and torch-pruning lazily)."""
    from apt_plugin_prune.commands import prune

    cli.add_command(prune)


@hookimpl
def apt_register_config(register):
    """Declare ``[plugins.prune]``: default method, scope, calibration and fine-tuning settings."""
    from apt_plugin_prune.commands import CONFIG_DEFAULTS, validate_config

    register("prune", dict(CONFIG_DEFAULTS), validate_config)
