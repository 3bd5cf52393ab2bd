"""The self-contained Hugging Face implementation of APT shipped inside every export.

``configuration_apt.py`` and ``modeling_apt.py`` import only torch and transformers (never
``apt_core``), because they are copied verbatim next to the weights and run by stock transformers
via ``trust_remote_code=True``. The plugin also imports them in-process (see :func:`register_auto_classes`)
so loading an APT export through the ``hf:`` model loader needs no remote code at all.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["REMOTE_FILES", "remote_dir", "register_auto_classes"]

#: The files copied into an export, next to ``config.json``.
REMOTE_FILES = ("configuration_apt.py", "modeling_apt.py")


def remote_dir() -> Path:
    """Directory holding the remote-code files."""
    return Path(__file__).resolve().parent


def register_auto_classes() -> None:
    """Register ``model_type "apt"`` with the transformers Auto classes of this process (idempotent)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from .configuration_apt import APTConfig
    from .modeling_apt import APTForCausalLM

    try:
        AutoConfig.register("apt", APTConfig)
    except ValueError:  # already registered in this process
        pass
    try:
        AutoModelForCausalLM.register(APTConfig, APTForCausalLM)
    except ValueError:
        pass
