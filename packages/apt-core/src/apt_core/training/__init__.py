"""The core trainer: ``Trainer(model, args, train_data, ...).train()``."""

from apt_core.training.arguments import TrainingArguments, lr_at_step
from apt_core.training.evaluation import perplexity
from apt_core.training.trainer import Trainer, TrainerState

__all__ = ["Trainer", "TrainingArguments", "TrainerState", "lr_at_step", "perplexity"]
