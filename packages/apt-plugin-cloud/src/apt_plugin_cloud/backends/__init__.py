"""Storage backends, one module per scheme; each SDK is imported only when its scheme is opened."""

from __future__ import annotations

import importlib

__all__ = ["BUILTIN_BACKENDS", "builtin_factory"]

#: scheme -> "module:Class"; the class is ``Class(url, settings)``.
BUILTIN_BACKENDS = {
    "file": "apt_plugin_cloud.backends.local:LocalBackend",
    "s3": "apt_plugin_cloud.backends.s3:S3Backend",
    "oss": "apt_plugin_cloud.backends.oss:OSSBackend",
    "hf": "apt_plugin_cloud.backends.hf:HFBackend",
    "modelscope": "apt_plugin_cloud.backends.modelscope:ModelScopeBackend",
}


def builtin_factory(scheme: str):
    """A ``factory(url, settings=None) -> backend`` that imports the backend module on first use."""
    target = BUILTIN_BACKENDS[scheme]

    def factory(url: str, settings: dict | None = None):
        module_name, _, class_name = target.partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        return cls(url, settings)

    factory.accepts_settings = True  # third-party factories take only the URL
    factory.__name__ = f"open_{scheme}_store"
    factory.__doc__ = f"Open a {scheme}:// store (imports its SDK now, not before)."
    return factory
