"""A plugin with a misspelled hook name: must be reported, not silently ignored."""

from apt_core import hookimpl

APT_API_VERSION = 1


@hookimpl
def apt_regster_commands(cli):
    raise AssertionError("never called")
