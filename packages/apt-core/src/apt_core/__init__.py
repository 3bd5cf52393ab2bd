"""APT core: the Autopoietic Transformer, its tokenizer, trainer and checkpoints, and the plugin host.

Importing ``apt_core`` is cheap: the model classes (and torch) load on first attribute access, so
plugin modules and ``apt-model --help`` never pay for torch.
"""

from __future__ import annotations

from importlib import import_module

from .errors import APTError
from .hookspecs import hookimpl, hookspec

__version__ = "0.1.0"

__all__ = ["APTError", "hookimpl", "hookspec", "APTConfig", "APTModel", "APTTokenizer", "__version__"]

_LAZY = {"APTConfig": "apt_core.model", "APTModel": "apt_core.model", "APTTokenizer": "apt_core.tokenizer"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'apt_core' has no attribute {name!r}")
