"""The APT model: configuration, network and generation."""

from apt_core.model.config import PRESETS, APTConfig
from apt_core.model.modeling import APTCache, APTModel, APTOutput

__all__ = ["APTConfig", "APTModel", "APTOutput", "APTCache", "PRESETS"]
