"""The ``apt-model prune`` command line, end to end through the real CLI and plugin manager."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import apt_plugin_prune.plugin
from apt_core.checkpoint import resolve_checkpoint
from apt_core.model import APTModel

FAST = ["--batch-size", "2", "--seq-len", "32", "--eval-batches", "2", "--calibration-batches", "2", "--no-progress"]


@pytest.fixture
def cli(apt_pm, apt_cli):
    apt_pm(apt_plugin_prune.plugin)
    return apt_cli


def test_structured_prune_writes_an_ordinary_checkpoint(cli, prune_checkpoint_dir, prune_text, tmp_path):
    out = tmp_path / "pruned"
    result = cli("prune", prune_checkpoint_dir, "--method", "taylor", "--sparsity", "0.5", "--structured", "heads,ffn",
                 "--finetune-steps", "2", "--data", prune_text, "--out", out, "--latency-reps", "3", *FAST)
    assert result.exit_code == 0, result.output
    assert "perplexity finetuned" in result.stdout and "CPU forward latency" in result.stdout
    final = resolve_checkpoint(out)
    config = json.loads((final / "config.json").read_text())
    assert config["n_heads"] == [2, 2] and config["d_ff"] == [48, 48]
    model = APTModel.from_pretrained(final)
    original = APTModel.from_pretrained(prune_checkpoint_dir)
    assert model.num_parameters() < 0.75 * original.num_parameters()
    report = json.loads((out / "prune_report.json").read_text())
    assert report["details"]["max_logit_diff"] < 1e-4
    assert report["details"]["engines"] == {"ffn": "torch-pruning", "heads": "slice"}
    assert report["pruned"]["parameters"] == model.num_parameters()
    assert not any(p.suffix in (".bin", ".pt", ".pkl", ".pth") for p in final.iterdir())


def test_unstructured_prune_then_stats(cli, prune_checkpoint_dir, prune_text, tmp_path):
    out = tmp_path / "sparse"
    result = cli("prune", prune_checkpoint_dir, "--method", "wanda", "--sparsity", "0.6", "--data", prune_text,
                 "--finetune-steps", "2", "--out", out, "--latency-reps", "0", *FAST)
    assert result.exit_code == 0, result.output
    stats = cli("prune", "stats", out, "--json")
    assert stats.exit_code == 0, stats.output
    data = json.loads(stats.stdout)
    # The statistics are measured on the weights, after fine-tuning, and match the zeros in the file.
    model = APTModel.from_pretrained(resolve_checkpoint(out))
    weights = [m.weight for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and n.startswith("layers.") and not n.endswith("ap_gate")]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert data["sparsity_prunable"] == pytest.approx(zeros) and zeros == pytest.approx(0.6, abs=0.01)
    assert data["size_on_disk_bytes"] > data["weights_file_bytes"] > 0
    assert "prunable" in data["denominators"] and len(data["layers"]) == 2
    text = cli("prune", "stats", out)
    assert f"sparsity (prunable): {data['sparsity_prunable']:.2%}" in text.stdout


def test_sweep_writes_table_json_and_plot(cli, prune_checkpoint_dir, prune_text, tmp_path):
    out = tmp_path / "sweep"
    result = cli("prune", "sweep", prune_checkpoint_dir, "--sparsities", "0.3,0.9", "--data", prune_text,
                 "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "sweep.json").read_text())
    assert [r["sparsity"] for r in data["rows"]] == [0.0, 0.3, 0.9]
    assert data["rows"][2]["effective_sparsity"] == pytest.approx(0.9, abs=0.01)
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "0.90" in result.stdout


def test_lottery_command(cli, prune_checkpoint_dir, prune_text, tmp_path):
    result = cli("prune", "lottery", prune_checkpoint_dir, "--rounds", "1", "--steps", "2", "--no-controls",
                 "--data", prune_text, "--batch-size", "2", "--seq-len", "32", "--eval-batches", "1",
                 "--no-progress", "--out", tmp_path / "lt")
    assert result.exit_code == 0, result.output
    assert "round 1" in result.stdout and "ticket:" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["--sparsity", "1.0"], "sparsity must be in [0, 1)"),
    (["--sparsity", "-0.2"], "sparsity must be in [0, 1)"),
    (["--sparsity", "lots"], "must be a number"),
    (["--structured", "heads,layers"], "unknown structured target(s) layers"),
    (["--structured", "heads", "--sparsity", "0.9"], "every attention head of layer 0"),
    (["--nm", "4:2"], "0 < N < M"),
])
def test_bad_input_is_one_clear_error(cli, prune_checkpoint_dir, tmp_path, args, message):
    out = tmp_path / "never"
    result = cli("prune", prune_checkpoint_dir, "--out", out, "--eval-batches", "0", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not out.exists()


def test_unknown_method_is_rejected(cli, prune_checkpoint_dir, tmp_path):
    result = cli("prune", prune_checkpoint_dir, "--method", "l0", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "l0" in result.output


def test_existing_output_and_missing_checkpoint(cli, prune_checkpoint_dir, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("precious")
    result = cli("prune", prune_checkpoint_dir, "--out", busy, "--eval-batches", "0")
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert (busy / "keep.txt").read_text() == "precious"
    result = cli("prune", tmp_path / "nope", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "checkpoint not found" in result.stderr


def test_config_section_is_validated(cli, prune_checkpoint_dir, tmp_path):
    result = cli("--set", "prune.method=l0", "prune", "stats", prune_checkpoint_dir)
    assert result.exit_code == 0  # stats does not read the section
    result = cli("--set", "prune.method=l0", "prune", prune_checkpoint_dir, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "unknown pruning method 'l0'" in result.stderr
    result = cli("--set", "prune.round_to=0", "prune", prune_checkpoint_dir, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "round_to" in result.stderr


def test_help_lists_subcommands_and_default_action(cli):
    result = cli("prune", "--help")
    assert result.exit_code == 0
    for word in ("lottery", "stats", "sweep", "CKPT --out DIR"):
        assert word in result.stdout
    result = cli("prune", "some-checkpoint", "--help")
    assert "--sparsity" in result.stdout and "--finetune-steps" in result.stdout


def test_plugin_module_imports_no_torch():
    code = ("import sys, apt_plugin_prune.plugin, apt_plugin_prune.commands; "
            "assert 'torch' not in sys.modules and 'torch_pruning' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)
