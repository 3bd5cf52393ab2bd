"""Profile a window of training steps with torch.profiler (``TrainingArguments.profile_steps``)."""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["StepProfiler"]


class StepProfiler:
    """Trainer callback that profiles optimizer steps ``start + 1`` to ``end`` (counted from 1).

    When the window closes, every process writes into *directory*: ``rank{R}.trace.json`` (a Chrome
    trace: chrome://tracing or ui.perfetto.dev), and ``rank{R}.txt``, its operations ranked by time on
    the device (CPU time when there is no GPU). The window should start after warm-up (compilation
    happens in the first steps), and its steps run slower than unprofiled ones.
    """

    def __init__(self, start: int, end: int, directory: str | Path, rank: int, device: torch.device) -> None:
        self.start, self.end = start, end
        self.directory = Path(directory)
        self.rank, self.device = rank, device
        self._profiler: torch.profiler.profile | None = None

    @property
    def files(self) -> tuple[Path, Path]:
        """This process's trace and table."""
        return self.directory / f"rank{self.rank}.trace.json", self.directory / f"rank{self.rank}.txt"

    def on_step_end(self, trainer) -> None:
        done = trainer.state.step + 1  # the trainer counts the step only after its callbacks
        if done == self.start:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self._profiler = torch.profiler.profile(activities=activities)
            self._profiler.start()
        elif done == self.end and self._profiler is not None:
            self._finish()

    def _finish(self) -> None:
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)  # the window's kernels belong in the trace
        self._profiler.stop()
        self.directory.mkdir(parents=True, exist_ok=True)
        trace, table = self.files
        self._profiler.export_chrome_trace(str(trace))
        sort = "self_device_time_total" if cuda else "self_cpu_time_total"
        steps = self.end - self.start
        table.write_text(f"steps {self.start + 1}-{self.end} ({steps}), rank {self.rank}, sorted by {sort}\n"
                         + self._profiler.key_averages().table(sort_by=sort, row_limit=40))
        self._profiler = None
