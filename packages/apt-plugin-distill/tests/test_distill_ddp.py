"""Distillation under ``torchrun``: 2 gloo processes on CPU train the student (and the feature projections)
exactly like 1 process on the same global batch -- so the objective really runs inside DDP's forward."""

import json
import textwrap

import pytest

from apt_core.testing import run_workers

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    import torch.distributed as dist
    from apt_core.testing import HookRecorder
    from apt_core.checkpoint import load_checkpoint
    from apt_core.data import tokenize_documents
    from apt_core.model import APTConfig, APTModel
    from apt_core.training import TrainingArguments
    from apt_plugin_distill.objective import DistillSettings
    from apt_plugin_distill.runner import run_distillation

    out, batch_size, teacher_dir, text_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    ckpt = load_checkpoint(teacher_dir)
    data = tokenize_documents([open(text_file).read()[:20000]], ckpt.tokenizer)
    torch.manual_seed(0)
    student = APTModel(APTConfig(vocab_size=260, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_seq_len=64))
    rec = HookRecorder()
    args = TrainingArguments(max_steps=4, batch_size=batch_size, seq_len=32, lr=3e-3, warmup_steps=1,
                             log_every=1, progress=False)
    result = run_distillation(ckpt.model, student, DistillSettings(method="feature"), args, data, hook=rec)
    if not dist.is_initialized() or dist.get_rank() == 0:
        weights = torch.cat([p.detach().flatten() for p in student.parameters()]).double()
        json.dump({"losses": rec.losses, "checksum": float(weights.sum()), "abs": float(weights.abs().sum()),
                   "world": dist.get_world_size() if dist.is_initialized() else 1}, open(out, "w"))
    if dist.is_initialized():
        dist.destroy_process_group()
    """
)


def test_two_gloo_processes_distill_like_one(tmp_path, distill_teacher, distill_text_file):
    script = tmp_path / "distill_worker.py"
    script.write_text(WORKER)
    common = [distill_teacher, distill_text_file]
    run_workers(script, tmp_path / "single.json", 4, *common, cwd=tmp_path)
    run_workers(script, tmp_path / "ddp.json", 2, *common, nproc=2, cwd=tmp_path)
    single = json.loads((tmp_path / "single.json").read_text())
    ddp = json.loads((tmp_path / "ddp.json").read_text())
    assert single["world"] == 1 and ddp["world"] == 2 and len(ddp["losses"]) == 4
    assert ddp["losses"] == pytest.approx(single["losses"], rel=1e-5, abs=1e-6)
    assert ddp["checksum"] == pytest.approx(single["checksum"], rel=1e-4, abs=1e-3)
    assert ddp["abs"] == pytest.approx(single["abs"], rel=1e-5)
