"""The core's own hook implementations, registered as the built-in plugin ``core``.

They go through the same registries as any plugin's, so plugins cannot shadow them silently.
Loaders import their heavy modules only when called.
"""

from __future__ import annotations

from .hookspecs import hookimpl

__all__ = ["apt_register_data_sources", "apt_register_model_loaders"]


def _file_documents(location, *, text_field, streaming):
    from .data import file_documents

    return file_documents(location, text_field=text_field, streaming=streaming)


def _default_documents(location, *, text_field, streaming):
    from .data import default_documents

    return default_documents(location, text_field=text_field, streaming=streaming)


def _apt_model(location):
    from .models import load_apt_model

    return load_apt_model(location)


@hookimpl
def apt_register_data_sources(register):
    register("file", _file_documents)
    register("default", _default_documents)


@hookimpl
def apt_register_model_loaders(register):
    register("apt", _apt_model)
