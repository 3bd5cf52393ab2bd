"""``distributed: fsdp`` (FSDP2): 2 gloo processes on CPU train like 1 process on the same global batch,
write an ordinary full checkpoint, and resume from it -- sharded or in a single process.

Tolerances: fp32 on CPU; the sharded run sums gradients in another order (reduce-scatter), so losses
and gradient norms match to 1e-5 relative and weights after a few AdamW steps to 1e-4 / 1e-5 absolute.
"""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from apt_core.errors import APTError
from apt_core.model import APTModel
from apt_core.model.serialization import read_safetensors
from apt_core.testing import run_workers
from apt_core.training import TrainingArguments

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch.distributed as dist
    from apt_core.testing import HookRecorder, tiny_training_inputs
    from apt_core.training import Trainer, TrainingArguments

    out, options = sys.argv[1], json.loads(sys.argv[2])
    tok, data, evals, model = tiny_training_inputs()
    rec = HookRecorder()
    args = TrainingArguments(max_steps=5, seq_len=32, lr=3e-3, warmup_steps=1, log_every=1, progress=False,
                             eval_every=2, save_every=3, **options)
    trainer = Trainer(model, args, data, evals, tokenizer=tok, hook=rec)
    trainer.train()
    if trainer.is_main_process:
        json.dump({"losses": rec.losses, "grad_norms": [m["grad_norm"] for m in rec.step_metrics],
                   "eval_loss": rec.final["eval_loss"], "world": trainer.dist.world_size,
                   "sharded": trainer.sharded}, open(out, "w"))
    if dist.is_initialized():
        dist.destroy_process_group()
    """
)


def _train(work, name, nproc=1, **options):
    script = work / "fsdp_worker.py"
    if not script.exists():
        script.write_text(WORKER)
    options.setdefault("out_dir", str(work / name))
    run_workers(script, work / f"{name}.json", json.dumps(options), nproc=nproc, cwd=work)
    return json.loads((work / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process (4 sequences per step) and FSDP on 2 processes (1 sequence x 2 micro-batches each)."""
    work = tmp_path_factory.mktemp("fsdp")
    single = _train(work, "single", batch_size=4)
    fsdp = _train(work, "fsdp", nproc=2, batch_size=1, grad_accum_steps=2, distributed="fsdp")
    return work, single, fsdp


def test_fsdp_on_two_processes_matches_one_process(runs):
    _, single, fsdp = runs
    assert single["world"] == 1 and not single["sharded"]
    assert fsdp["world"] == 2 and fsdp["sharded"]
    assert len(fsdp["losses"]) == 5
    assert fsdp["losses"] == pytest.approx(single["losses"], rel=1e-5, abs=1e-6)
    # Clipping is active (lr 3e-3, max_grad_norm 1): the norm is taken over the shards and the replicated scalars.
    assert max(single["grad_norms"]) > 1.0
    assert fsdp["grad_norms"] == pytest.approx(single["grad_norms"], rel=1e-5)
    # 93 eval blocks of 1: rank 0 runs one forward more than it counts (FSDP needs equal forwards).
    assert fsdp["eval_loss"] == pytest.approx(single["eval_loss"], rel=1e-5)


def test_fsdp_writes_an_ordinary_full_checkpoint(runs):
    work, _, _ = runs
    single_dir, fsdp_dir = work / "single" / "checkpoint-0000005", work / "fsdp" / "checkpoint-0000005"
    assert (work / "fsdp" / "latest").read_text().strip() == fsdp_dir.name
    model = APTModel.from_pretrained(fsdp_dir)  # full tensors, every key, the embedding still tied
    reference = APTModel.from_pretrained(single_dir)
    assert model.lm_head is None and "lm_head.weight" not in model.state_dict()
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    # The optimizer state has the single-process layout (keyed by parameter index) and the same values.
    ours, theirs = (read_safetensors(d / "optimizer.safetensors") for d in (fsdp_dir, single_dir))
    assert sorted(ours) == sorted(theirs)
    for key, tensor in theirs.items():
        torch.testing.assert_close(ours[key], tensor, rtol=1e-4, atol=1e-6, msg=key)
    layouts = [json.loads((d / "optimizer.json").read_text()) for d in (fsdp_dir, single_dir)]
    assert layouts[0]["param_groups"] == layouts[1]["param_groups"]


def test_fsdp_checkpoint_resumes_sharded_and_in_one_process(runs):
    work, single, fsdp = runs
    middle = work / "fsdp" / "checkpoint-0000003"
    resumed = _train(work, "fsdp-resumed", nproc=2, batch_size=1, grad_accum_steps=2, distributed="fsdp",
                     resume_from=str(middle))
    assert resumed["losses"] == pytest.approx(fsdp["losses"][3:], rel=1e-5, abs=1e-6)
    assert resumed["eval_loss"] == pytest.approx(fsdp["eval_loss"], rel=1e-5)
    final = read_safetensors(work / "fsdp-resumed" / "checkpoint-0000005" / "model.safetensors")
    for name, tensor in read_safetensors(work / "fsdp" / "checkpoint-0000005" / "model.safetensors").items():
        torch.testing.assert_close(final[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    # The same files continue a plain single-process run.
    alone = _train(work, "fsdp-resumed-alone", batch_size=4, resume_from=str(middle))
    assert alone["losses"] == pytest.approx(single["losses"][3:], rel=1e-5, abs=1e-6)


def test_fsdp_bf16_gathers_in_bf16_and_keeps_fp32_weights(tmp_path):
    """bf16 runs through FSDP's MixedPrecisionPolicy instead of autocast: close to the autocast run (the
    residual stream is bf16 instead of fp32, hence the looser tolerance), and the checkpoint is fp32."""
    single = _train(tmp_path, "single", batch_size=4, mixed_precision="bf16")
    fsdp = _train(tmp_path, "fsdp", nproc=2, batch_size=2, distributed="fsdp", mixed_precision="bf16")
    assert fsdp["losses"] == pytest.approx(single["losses"], rel=2e-3)
    weights = read_safetensors(tmp_path / "fsdp" / "checkpoint-0000005" / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float32}


def test_distributed_must_be_ddp_or_fsdp():
    assert TrainingArguments(distributed="fsdp").distributed == "fsdp"
    with pytest.raises(APTError, match="distributed must be ddp or fsdp, got 'zero'"):
        TrainingArguments(distributed="zero")


def test_cli_rejects_a_bad_distributed_value_in_one_line(apt_cli, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"vocab_size": 260, "d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64,
                                  "max_seq_len": 64, "training": {"distributed": "zero"}}))
    result = apt_cli("train", "--config", config, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["error: distributed must be ddp or fsdp, got 'zero'"]


def test_cli_fsdp_in_one_process_just_trains(apt_cli, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be, that is the question\n" * 200)
    result = apt_cli("train", "--config", "tiny", "--data", corpus, "--steps", "2", "--distributed", "fsdp",
                     "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    state = json.loads((tmp_path / "run" / "checkpoint-0000002" / "trainer_state.json").read_text())
    assert state["args"]["distributed"] == "fsdp" and state["world_size"] == 1
