"""Pruning for APT: unstructured, structured (torch-pruning), lottery tickets, fine-tuning."""

__version__ = "0.1.0"
