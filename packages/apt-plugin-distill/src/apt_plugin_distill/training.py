"""The core Trainer, plus keeping the feature projections across resumes.

The core Trainer saves ``model.state_dict()`` -- for a :class:`DistillationModule` the student's only, as it
must be -- so the learned projections of feature distillation would be lost on resume. Until the Trainer
has a public place for auxiliary trained modules, :class:`DistillTrainer` writes them beside the
checkpoints, ``<run>/distill-projections/<checkpoint name>.safetensors``, before each checkpoint is
written (so they exist when ``apt_checkpoint_saved`` fires), prunes them with the checkpoint retention,
and loads them back on resume.
"""

from __future__ import annotations

import logging
from pathlib import Path

from apt_core.checkpoint import checkpoint_name, resolve_checkpoint
from apt_core.model.serialization import read_safetensors, write_safetensors
from apt_core.training import Trainer

__all__ = ["DistillTrainer", "PROJECTIONS_DIR", "Throughput"]

PROJECTIONS_DIR = "distill-projections"
log = logging.getLogger(__name__)


class DistillTrainer(Trainer):
    """:class:`apt_core.training.Trainer` that also saves and restores ``model.projections``."""

    def _projections(self):
        return getattr(self.model, "projections", None)

    def save(self) -> Path | None:
        projections = self._projections()
        if projections is not None and self.out_dir is not None and self.is_main_process:
            folder = self.out_dir / PROJECTIONS_DIR
            folder.mkdir(parents=True, exist_ok=True)
            name = checkpoint_name(self.state.step)
            tmp = folder / f".{name}.tmp"
            write_safetensors({k: v.detach().contiguous() for k, v in projections.state_dict().items()}, tmp)
            tmp.replace(folder / f"{name}.safetensors")
        path = super().save()
        if projections is not None and self.out_dir is not None and self.is_main_process:
            kept = {p.name for p in self.out_dir.glob("checkpoint-*")}
            for file in (self.out_dir / PROJECTIONS_DIR).glob("checkpoint-*.safetensors"):
                if file.name.removesuffix(".safetensors") not in kept:
                    file.unlink(missing_ok=True)
        return path

    def resume(self, path) -> Path:
        directory = super().resume(path)
        projections = self._projections()
        if projections is not None:
            file = resolve_checkpoint(path).parent / PROJECTIONS_DIR / f"{directory.name}.safetensors"
            if file.is_file():
                projections.load_state_dict(read_safetensors(file, device=self.device))
            else:
                log.warning("no saved feature projections for %s; they restart from their initial values",
                            directory.name)
        return directory


class Throughput:
    """Trainer callback measuring training tokens per second over the steps of this run."""

    def __init__(self) -> None:
        import time

        self._clock = time.perf_counter
        self.start: float | None = None
        self.start_tokens = 0
        self.end: float | None = None
        self.end_tokens = 0

    def on_step_end(self, trainer) -> None:
        now = self._clock()
        if self.start is None:
            # Measured from the end of the first step: it includes one-off warm-up costs.
            self.start, self.start_tokens = now, trainer.state.tokens_seen
        self.end, self.end_tokens = now, trainer.state.tokens_seen

    @property
    def tokens_per_second(self) -> float | None:
        if self.start is None or self.end is None or self.end <= self.start:
            return None
        return (self.end_tokens - self.start_tokens) / (self.end - self.start)
