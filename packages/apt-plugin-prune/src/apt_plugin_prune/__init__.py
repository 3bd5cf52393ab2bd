"""Pruning for APT: unstructured, structured (torch-pruning), lottery tickets, fine-tuning.

Importing the package is cheap (no torch). Modules, one concept each:

``options``      validation of sparsities, methods, targets (no torch)
``calibration``  Taylor gradients and Wanda input norms from calibration batches
``masks``        unstructured scores -> masks -> zeros in the weights, kept through training
``structured``   head / FFN channel / autopoietic-rank removal (torch-pruning for FFN, slicing otherwise)
``pruning``      one pruning run on a checkpoint (``prune_model``, ``prune_checkpoint``)
``finetune``     recovery training through the core Trainer, perplexity
``recovery``     distillation from the unpruned model as the fine-tuning objective (kd vs ce)
``lottery``      iterative magnitude pruning with rewinding and controls
``stats``        sparsity measured on the weights, with explicit denominators
``sweep``        perplexity against sparsity, table and plot
``commands``     the ``apt-model prune`` click group; ``plugin`` the entry point
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
