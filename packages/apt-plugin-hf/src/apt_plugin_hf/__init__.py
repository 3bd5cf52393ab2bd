"""Hugging Face integration for APT: export/import, Hub push/pull, datasets, transformers.Trainer."""

__version__ = "0.1.0"
