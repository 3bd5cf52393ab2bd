"""Recovery by distillation from the unpruned model: the loss, the teacher, masks and the CLI."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from prune_testutils import make_model

import apt_plugin_prune.plugin
from apt_plugin_prune.finetune import TokenData, finetune
from apt_plugin_prune.pruning import PruneSettings, prune_model
from apt_plugin_prune.recovery import DistillationLoss, Recovery, distillation_kl

FAST = ["--batch-size", "2", "--seq-len", "32", "--eval-batches", "2", "--no-progress", "--latency-reps", "0"]


def _token_data() -> TokenData:
    generator = torch.Generator().manual_seed(0)
    return TokenData(torch.randint(0, 260, (4000,), generator=generator),
                     torch.randint(0, 260, (640,), generator=generator))


@torch.no_grad()
def _kl_to(teacher, student, tokens: torch.Tensor) -> float:
    """Mean token KL(teacher || student) at T = 1 on held-out blocks of 32."""
    batch = tokens[: (len(tokens) // 32) * 32].view(-1, 32)
    return float(distillation_kl(student.eval()(batch).logits, teacher.eval()(batch).logits, batch))


def _sharp_teacher():
    """A random model whose blocks matter: at the test init the logits are nearly uniform and dominated
    by the (tied) embedding, so pruning heads would hardly move them and the KL would be ~1e-5."""
    teacher = make_model()
    with torch.no_grad():
        for name, param in teacher.named_parameters():
            if name.startswith("layers.") and param.dim() == 2:
                param.mul_(3.0)
        teacher.embed.weight.mul_(10.0)
    return teacher


def _tune(model, steps, loss_fn=None, masks=None):
    finetune(model, _token_data(), steps, masks=masks, lr=3e-3, batch_size=4, seq_len=32, progress=False,
             device="cpu", eval_batches=1, loss_fn=loss_fn)
    return model.eval()


def test_kl_matches_a_hand_computed_sum_and_skips_ignored_positions():
    generator = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(2, 5, 7, generator=generator), torch.randn(2, 5, 7, generator=generator)
    labels = torch.randint(0, 7, (2, 5), generator=generator)
    labels[1, 3:] = -100  # sequence 1: positions 2 and 3 predict ignored labels
    mask = torch.ones(2, 5, dtype=torch.long)
    mask[0, 0] = 0  # sequence 0: position 0 is padding, so it predicts nothing
    temperature = 2.0
    total, count = 0.0, 0
    for b in range(2):
        for i in range(4):
            if labels[b, i + 1] == -100 or mask[b, i] == 0:
                continue
            p = F.softmax(teacher[b, i] / temperature, -1)
            q = F.softmax(student[b, i] / temperature, -1)
            total += float((p * (p.log() - q.log())).sum())  # KL(teacher || student): the forward direction
            count += 1
    assert count == 5
    got = distillation_kl(student, teacher, labels, mask, temperature)
    assert float(got) == pytest.approx(temperature**2 * total / count, rel=1e-5)
    assert float(distillation_kl(teacher, teacher, labels, mask, temperature)) == pytest.approx(0.0, abs=1e-6)


def test_alpha_zero_is_plain_cross_entropy_and_metrics_are_reported():
    model, teacher = make_model(), make_model(seed=1)
    batch = {"input_ids": torch.randint(0, 260, (2, 16)), "labels": torch.randint(0, 260, (2, 16))}
    loss, metrics = DistillationLoss(teacher, alpha=0.0)(model, batch)
    assert torch.allclose(loss, model(batch["input_ids"], labels=batch["labels"]).loss)
    assert set(metrics) == {"kd_loss", "ce_loss"} and float(metrics["kd_loss"]) > 0
    loss, metrics = DistillationLoss(teacher, alpha=0.25, temperature=2.0)(model, batch)
    assert float(loss.detach()) == pytest.approx(0.25 * float(metrics["kd_loss"]) + 0.75 * float(metrics["ce_loss"]), rel=1e-5)


def test_kd_recovery_moves_the_pruned_model_towards_the_teacher(apt_pm):
    apt_pm()
    teacher = _sharp_teacher()
    pruned, _, _ = prune_model(copy.deepcopy(teacher), PruneSettings(method="magnitude", sparsity=0.5,
                                                                     structured=("heads", "ffn")))
    held_out = _token_data().eval
    before = _kl_to(teacher, pruned, held_out)
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    kd = _tune(copy.deepcopy(pruned), 10, Recovery("kd", alpha=1.0, temperature=1.0).loss_fn(teacher))
    ce = _tune(copy.deepcopy(pruned), 10)  # the control: same steps, next-token CE on the same data
    after_kd, after_ce = _kl_to(teacher, kd, held_out), _kl_to(teacher, ce, held_out)
    assert after_kd < 0.7 * before, (before, after_kd)  # measured: 0.0090 -> 0.0045 (CE: 0.017)
    assert after_kd < after_ce, (after_kd, after_ce)
    # The teacher is frozen: not one weight changed, and it still trains nothing.
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_state[name]), f"teacher weight {name} changed"
    assert not teacher.training


def test_masks_survive_kd_finetuning(apt_pm):
    apt_pm()
    teacher = make_model()
    model = copy.deepcopy(teacher)
    _, masks, _ = prune_model(model, PruneSettings(method="magnitude", sparsity=0.7))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _tune(model, 4, DistillationLoss(teacher, alpha=0.5, temperature=2.0), masks=masks)
    params = dict(model.named_parameters())
    for name, mask in masks.masks.items():
        assert (params[name][~mask] == 0).all(), f"{name}: a pruned weight was revived"
        assert not torch.equal(params[name][mask], before[name][mask]), f"{name}: survivors did not train"
    # The teacher keeps its own (dense) weights: it was copied before pruning.
    teacher_params = dict(teacher.named_parameters())
    assert all(bool((teacher_params[n] != 0).all()) for n in masks.masks)


def test_recovery_settings_are_checked():
    assert Recovery("ce").loss_fn(None) is None
    with pytest.raises(Exception, match="unknown recovery 'l2'"):
        Recovery("l2")
    with pytest.raises(Exception, match=r"kd alpha must be in \[0, 1\]"):
        Recovery("kd", alpha=1.5)
    with pytest.raises(Exception, match="kd temperature must be > 0"):
        Recovery("kd", temperature=0)


@pytest.fixture
def cli(apt_pm, apt_cli):
    apt_pm(apt_plugin_prune.plugin)
    return apt_cli


@pytest.mark.parametrize("mode", ["kd", "ce"])
def test_cli_recover_flag_end_to_end(cli, tiny_checkpoint, prune_text, tmp_path, mode):
    out = tmp_path / f"pruned-{mode}"
    extra = ["--kd-alpha", "0.5", "--kd-temperature", "2"] if mode == "kd" else []
    result = cli("prune", tiny_checkpoint, "--structured", "ffn", "--sparsity", "0.5", "--finetune-steps", "3",
                 "--recover", mode, *extra, "--data", prune_text, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "prune_report.json").read_text())
    metrics = report["finetuned"]["metrics"]
    assert math.isfinite(report["finetuned"]["perplexity"])
    if mode == "kd":
        assert report["recovery"] == {"mode": "kd", "alpha": 0.5, "temperature": 2.0}
        assert "distillation from the unpruned model (alpha 0.5, temperature 2)" in result.stdout
        assert metrics["loss"] == pytest.approx(0.5 * metrics["kd_loss"] + 0.5 * metrics["ce_loss"], rel=1e-4)
    else:
        assert report["recovery"]["mode"] == "ce" and "next-token cross-entropy" in result.stdout
        assert "kd_loss" not in metrics


def test_cli_default_recovery_is_distillation(cli, tiny_checkpoint, prune_text, tmp_path):
    out = tmp_path / "pruned"
    result = cli("prune", tiny_checkpoint, "--sparsity", "0.5", "--finetune-steps", "2", "--data", prune_text,
                 "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "prune_report.json").read_text())
    assert report["recovery"] == Recovery().to_dict() and report["recovery"]["mode"] == "kd"
    assert "kd_loss" in report["finetuned"]["metrics"]


@pytest.mark.parametrize("args,message", [
    (["--kd-alpha", "1.5"], "--kd-alpha must be in [0, 1]"),
    (["--kd-alpha", "-0.1"], "--kd-alpha must be in [0, 1]"),
    (["--kd-alpha", "nan"], "--kd-alpha must be a number in [0, 1]"),
    (["--kd-alpha", "half"], "--kd-alpha must be a number in [0, 1]"),
    (["--kd-temperature", "0"], "--kd-temperature must be > 0"),
    (["--kd-temperature", "-2"], "--kd-temperature must be > 0"),
    (["--kd-temperature", "inf"], "--kd-temperature must be > 0"),
    (["--kd-temperature", "warm"], "--kd-temperature must be a number > 0"),
])
def test_bad_kd_settings_are_one_clear_error(cli, tiny_checkpoint, tmp_path, args, message):
    out = tmp_path / "never"
    result = cli("prune", tiny_checkpoint, "--finetune-steps", "2", "--out", out, "--eval-batches", "0", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not out.exists()


def test_bad_kd_settings_in_the_config_section(cli, tiny_checkpoint, tmp_path):
    for setting, message in (("prune.kd_alpha=2", "plugins.prune.kd_alpha must be in [0, 1]"),
                             ("prune.kd_temperature=0", "plugins.prune.kd_temperature must be > 0"),
                             ("prune.recover=mse", "unknown recovery 'mse'")):
        result = cli("--set", setting, "prune", tiny_checkpoint, "--out", tmp_path / "o")
        assert result.exit_code == 2 and message in result.stderr, (setting, result.output)
