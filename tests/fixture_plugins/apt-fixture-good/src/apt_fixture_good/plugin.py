"""A well-behaved third-party plugin: a command, a config section and a training hook."""

import os

import click

from apt_core import hookimpl

APT_API_VERSION = 1


@click.command("fixture-hello")
@click.option("--name", default="world")
def hello(name):
    """Greet (proves third-party commands are discovered)."""
    from apt_core.config import get_config

    click.echo(f"{get_config().plugin('fixture')['greeting']}, {name}")


@hookimpl
def apt_register_commands(cli):
    cli.add_command(hello)


@hookimpl
def apt_register_config(register):
    def validate(values):
        if not values["greeting"].strip():
            from apt_core.errors import APTError

            raise APTError("plugins.fixture.greeting must not be empty")
        return values

    register("fixture", {"greeting": "hello", "repeat": 1}, validate)


@hookimpl
def apt_train_step_end(trainer, step, metrics):
    # Append each step to a file named by the test, so the test can see the hook ran.
    log = os.environ.get("APT_FIXTURE_STEP_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{step}\n")
