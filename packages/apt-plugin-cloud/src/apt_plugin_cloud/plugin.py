"""Entry point of apt-plugin-cloud (group ``apt.plugins``, name ``cloud``).

Thin on purpose: importing it imports neither torch nor any cloud SDK. Each hook imports what it
needs when called; a backend's SDK is imported only when a URL of its scheme is opened.
"""

from __future__ import annotations

from apt_core import hookimpl

__all__ = ["APT_API_VERSION", "apt_register_storage", "apt_register_commands", "apt_register_config",
           "apt_checkpoint_saved", "apt_train_end"]

#: Major version of the apt-core hook API this plugin was built for.
APT_API_VERSION = 1


@hookimpl
def apt_register_storage(register):
    """``file``, ``s3``, ``oss``, ``hf`` and ``modelscope`` stores (SDKs imported on first use)."""
    from .backends import BUILTIN_BACKENDS, builtin_factory

    for scheme in BUILTIN_BACKENDS:
        register(scheme, builtin_factory(scheme))


@hookimpl
def apt_register_commands(cli):
    """``backup``, ``restore``, ``backups list|verify|prune`` and ``sync``."""
    from .commands import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


@hookimpl
def apt_register_config(register):
    """The ``[plugins.cloud]`` section: auto_backup URLs, default store, per-endpoint settings."""
    from .settings import DEFAULTS, validate_settings

    register("cloud", DEFAULTS, validate_settings)


@hookimpl
def apt_checkpoint_saved(trainer, path):
    """Queue the checkpoint for upload to every auto_backup URL; returns at once."""
    from .autobackup import on_checkpoint_saved

    on_checkpoint_saved(trainer, path)


@hookimpl(trylast=True)
def apt_train_end(trainer, metrics):
    """Wait for pending auto-backups and report them (an error if any failed and fail_on_error).

    ``trylast``: other plugins' end-of-training work runs first, whatever happens to the uploads.
    """
    from .autobackup import on_train_end

    on_train_end(trainer, metrics)
