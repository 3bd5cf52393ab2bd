"""A plugin built for another major version of the hook API (declared by APT_API_VERSION)."""

from apt_core import hookimpl

APT_API_VERSION = 2


@hookimpl
def apt_register_commands(cli):
    raise AssertionError("an incompatible plugin must not be registered")
