"""Knowledge distillation for APT: response, feature and relation losses through the core trainer."""

__version__ = "0.1.0"
