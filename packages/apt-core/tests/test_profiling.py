"""Profiling a window of training steps: the Trainer option and ``apt-model train --profile``."""

from __future__ import annotations

import json

import pytest

from apt_core.errors import APTError
from apt_core.testing import tiny_training_inputs
from apt_core.training import Trainer, TrainingArguments
from apt_core.training.profiling import StepProfiler


def arguments(out_dir, **changes):
    base = dict(max_steps=5, batch_size=2, seq_len=32, warmup_steps=0, progress=False, out_dir=str(out_dir),
                save_final=False)
    return TrainingArguments(**{**base, **changes})


def test_the_window_is_profiled_and_written(tmp_path):
    seen = []

    class WatchStep:  # runs before the profiler, which the trainer appends after the caller's callbacks
        def on_step_end(self, trainer):
            profiler = next(c for c in trainer.callbacks if isinstance(c, StepProfiler))
            seen.append((trainer.state.step + 1, profiler._profiler is not None))

    _, tokens, _, model = tiny_training_inputs()
    trainer = Trainer(model, arguments(tmp_path, profile_steps=[2, 4]), tokens, callbacks=[WatchStep()])
    trainer.train()

    # The window opens at the end of step 2, so steps 3 and 4 run inside it, and closes after step 4.
    assert seen == [(1, False), (2, False), (3, True), (4, True), (5, False)]
    profiler = next(c for c in trainer.callbacks if isinstance(c, StepProfiler))
    trace_path, table_path = profiler.files
    assert trace_path == tmp_path / "profile" / "rank0.trace.json"
    events = json.loads(trace_path.read_text())["traceEvents"]
    names = {e.get("name") for e in events}
    assert "aten::mm" in names or "aten::addmm" in names  # the model's matmuls were recorded
    assert sum(e.get("name") == "Optimizer.step#AdamW.step" for e in events) == 2  # exactly two steps
    table = table_path.read_text()
    assert table.startswith("steps 3-4 (2), rank 0") and "aten::" in table


@pytest.mark.parametrize("window", [[0, 2], [3, 3], [4, 2], [2, 6], [1], [1.5, 3]])
def test_bad_windows_are_one_clear_error(tmp_path, window):
    with pytest.raises(APTError, match="profile_steps must be"):
        arguments(tmp_path, profile_steps=window)


def test_a_profile_needs_somewhere_to_go():
    with pytest.raises(APTError, match="needs an out_dir"):
        TrainingArguments(max_steps=5, profile_steps=[1, 2])


def test_cli_profile_option(apt_pm, apt_cli, tmp_path):
    apt_pm()
    run = tmp_path / "run"
    result = apt_cli("train", "--config", "tiny", "--steps", "4", "--profile", "1:3", "--out", str(run), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["profile"] == [str(run / "profile" / "rank0.trace.json"), str(run / "profile" / "rank0.txt")]
    assert (run / "profile" / "rank0.txt").read_text().startswith("steps 2-3 (2)")

    bad = apt_cli("train", "--config", "tiny", "--steps", "4", "--profile", "1-3", "--out", str(tmp_path / "b"))
    assert bad.exit_code == 2 and "--profile takes START:END" in bad.stderr
    assert not (tmp_path / "b").exists()  # refused before anything was written
