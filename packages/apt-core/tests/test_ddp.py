"""The trainer under ``torchrun``: 2 gloo processes on CPU give the same losses as 1 process
on the same global batch."""

from __future__ import annotations

import json
import textwrap

import pytest

from apt_core.testing import run_workers

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    import torch.distributed as dist
    from apt_core.testing import HookRecorder, tiny_training_inputs
    from apt_core.training import Trainer, TrainingArguments

    out, batch_size, run_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    tok, data, evals, model = tiny_training_inputs()
    rec = HookRecorder()
    args = TrainingArguments(max_steps=5, batch_size=batch_size, seq_len=32, lr=3e-3, warmup_steps=1,
                             log_every=1, progress=False, out_dir=run_dir, save_every=0)
    trainer = Trainer(model, args, data, evals, tokenizer=tok, hook=rec)
    trainer.train()
    if trainer.is_main_process:
        weights = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
        json.dump({"losses": rec.losses, "eval_loss": rec.final["eval_loss"], "world": trainer.dist.world_size,
                   "checksum": float(weights.double().sum()), "abs": float(weights.double().abs().sum())},
                  open(out, "w"))
    if dist.is_initialized():
        dist.destroy_process_group()
    """
)


def test_two_gloo_processes_match_one_process_on_the_same_global_batch(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    run_workers(script, tmp_path / "single.json", 4, tmp_path / "run1", cwd=tmp_path)
    run_workers(script, tmp_path / "ddp.json", 2, tmp_path / "run2", nproc=2, cwd=tmp_path)
    single = json.loads((tmp_path / "single.json").read_text())
    ddp = json.loads((tmp_path / "ddp.json").read_text())
    assert single["world"] == 1 and ddp["world"] == 2
    assert len(ddp["losses"]) == 5
    assert ddp["losses"] == pytest.approx(single["losses"], rel=1e-5, abs=1e-6)
    assert ddp["eval_loss"] == pytest.approx(single["eval_loss"], rel=1e-5)
    assert ddp["checksum"] == pytest.approx(single["checksum"], rel=1e-4, abs=1e-3)
    assert ddp["abs"] == pytest.approx(single["abs"], rel=1e-5)
    # Only rank 0 wrote the checkpoint, and it is complete.
    assert (tmp_path / "run2" / "latest").read_text().strip() == "checkpoint-0000005"
