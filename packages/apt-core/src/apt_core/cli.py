"""The ``apt-model`` command line.

Core commands are imported only when invoked or listed (kedro's ``LazyGroup`` idea); their
modules import torch inside the command bodies, so ``apt-model --help`` and ``apt-model plugins``
never import torch. Plugins add commands through ``apt_register_commands``.
"""

from __future__ import annotations

import logging
import sys
from importlib import import_module

import click

from . import __version__
from .errors import APTError, redact

__all__ = ["cli", "main", "APTGroup"]

CORE_COMMANDS = {
    "plugins": "apt_core.commands.plugins:plugins",
    "config": "apt_core.commands.config:config",
    "train": "apt_core.commands.train:train",
    "generate": "apt_core.commands.generate:generate",
    "eval": "apt_core.commands.eval:eval_command",
    "info": "apt_core.commands.info:info",
    "export": "apt_core.commands.export:export",
}


class APTGroup(click.Group):
    """Root group: lazy core commands plus plugin commands, refusing duplicate names."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = dict(CORE_COMMANDS)
        self._owners = {name: "apt-core" for name in CORE_COMMANDS}
        self._registering_owner: str | None = None
        self._plugins_added = False

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name
        owner = self._registering_owner or "apt-core"
        if self._registering_owner and (name in self.commands or name in self._lazy):
            raise APTError(f"command '{name}' is registered by both {self._owners[name]} and {owner}")
        super().add_command(cmd, name)
        self._owners[name] = owner

    def reset_plugin_commands(self) -> None:
        """Forget plugin commands, so the next run registers them from the current plugin manager."""
        for name in [n for n, owner in self._owners.items() if owner != "apt-core"]:
            self.commands.pop(name, None)
            del self._owners[name]
        self._plugins_added = False

    def add_plugin_commands(self) -> None:
        """Call ``apt_register_commands`` once, attributing each command to its plugin."""
        if self._plugins_added:
            return
        self._plugins_added = True
        from .plugins import get_plugin_manager

        pm = get_plugin_manager()
        for impl in pm.hook.apt_register_commands.get_hookimpls():  # registration order
            self._registering_owner = pm.distribution_of(impl.plugin_name)
            try:
                impl.function(cli=self)
            except APTError:
                raise
            except Exception as exc:  # a broken plugin loses its commands, the CLI keeps working
                pm.record_failure(impl.plugin_name, exc)
            finally:
                self._registering_owner = None

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.add_plugin_commands()
        return sorted(set(self.commands) | set(self._lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self._lazy and name not in self.commands:
            module_name, attr = self._lazy[name].split(":")
            super().add_command(getattr(import_module(module_name), attr), name)
        self.add_plugin_commands()
        return self.commands.get(name)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (so in-process test runners capture it), redacted."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("apt-model: %(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # logging.StreamHandler assigns it; we always follow sys.stderr
        pass

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


_handler = _StderrHandler()


def _setup_logging(debug: bool) -> None:
    root = logging.getLogger()
    if _handler not in root.handlers:
        root.addHandler(_handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)


@click.group(cls=APTGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="apt-model")
@click.option("--no-plugins", is_flag=True, help="Load no installed plugin (same as APT_LOAD_PLUGINS=).")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("--set", "-s", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a config setting (highest precedence).")
def cli(no_plugins: bool, debug: bool, overrides: tuple[str, ...]) -> None:
    """APT: train, compress and ship Autopoietic Transformer language models.

    \b
    Plugins (pip install apt-plugin-NAME) add commands: run `apt-model plugins` to see them.
    Environment: APT_LOAD_PLUGINS, APT_DISABLE_PLUGINS, APT_STRICT_PLUGINS, APT_TRACE_PLUGINS.
    """
    from .config import set_cli_overrides

    set_cli_overrides(list(overrides))


def _early_flags(args: list[str]) -> tuple[bool, bool]:
    """``--no-plugins`` / ``--debug`` must act before plugin commands are registered, i.e. before
    click resolves the subcommand, so they are read from the options ahead of it."""
    head: list[str] = []
    for arg in args:
        if not arg.startswith("-"):
            break
        head.append(arg)
    return "--no-plugins" in head, "--debug" in head


def main(args: list[str] | None = None) -> None:
    """Console-script entry point: user errors become one line on stderr and exit status 2."""
    args = list(sys.argv[1:] if args is None else args)
    no_plugins, debug = _early_flags(args)
    _setup_logging(debug)
    cli.reset_plugin_commands()
    from . import plugins

    previous = plugins.set_plugin_manager(plugins.make_plugin_manager(load=[])) if no_plugins else None
    try:
        cli.main(args=args, prog_name="apt-model", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except APTError as exc:
        if debug:
            raise
        click.echo(f"error: {redact(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    finally:
        if no_plugins:
            plugins.set_plugin_manager(previous)
