"""The model commands end to end, in-process: train, generate, eval, info, export, and their errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from apt_core import hookimpl
from apt_core.data import default_corpus_text


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "plays.txt"
    path.write_text(default_corpus_text("train")[:30_000])
    return path


@pytest.fixture(scope="module")
def trained_once(corpus, tmp_path_factory):
    """One tiny training run through the CLI, shared by the module (tests get a copy)."""
    from apt_core.plugins import make_plugin_manager, set_plugin_manager
    from apt_core.testing import run_cli

    previous = set_plugin_manager(make_plugin_manager(entry_points=False, plugins=(), strict=True))
    try:
        run = tmp_path_factory.mktemp("trained") / "run"
        result = run_cli("train", "--config", "tiny", "--data", str(corpus), "--steps", "6", "--out", str(run),
                         "--json", "--save-every", "3", "--seed", "1")
    finally:
        set_plugin_manager(previous)
    assert result.exit_code == 0, result.output
    return run, json.loads(result.stdout)


@pytest.fixture
def trained(apt_pm, trained_once, tmp_path):
    apt_pm()
    run = tmp_path / "run"
    shutil.copytree(trained_once[0], run)
    summary = dict(trained_once[1], checkpoint=str(run / "checkpoint-0000006"))
    return run, summary


def test_train_json_summary_and_checkpoint(trained):
    run, summary = trained
    assert summary["steps"] == 6 and summary["parameters"] > 10_000
    assert summary["checkpoint"].endswith("checkpoint-0000006")
    assert summary["eval_perplexity"] == pytest.approx(2.718281828 ** summary["eval_loss"], rel=1e-6)
    assert summary["sample"] and summary["tokens_seen"] == 6 * 4 * 32
    assert (run / "latest").read_text().strip() == "checkpoint-0000006"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-0000003", "checkpoint-0000006", "latest"]


def test_train_table_and_resume(apt_pm, apt_cli, corpus, tmp_path):
    apt_pm()
    run = tmp_path / "run"
    first = apt_cli("train", "--config", "tiny", "--data", str(corpus), "--steps", "3", "--out", str(run))
    assert first.exit_code == 0, first.output
    assert "training summary" in first.stdout and "eval perplexity" in first.stdout
    assert "sample ('ROMEO AND JULIET'" in first.stdout  # first line of the data as the prompt
    again = apt_cli("train", "--config", "tiny", "--data", str(corpus), "--steps", "3", "--out", str(run))
    assert again.exit_code == 2 and "--resume" in again.stderr
    resumed = apt_cli("train", "--data", str(corpus), "--steps", "5", "--out", str(run), "--resume", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["steps"] == 5


def test_generate_is_seeded_and_greedy_is_stable(trained, apt_cli):
    run, _ = trained
    a = apt_cli("generate", str(run), "ROMEO:", "--max-new-tokens", "20", "--seed", "3", "--json")
    b = apt_cli("generate", str(run), "ROMEO:", "--max-new-tokens", "20", "--seed", "3", "--json")
    assert a.exit_code == 0, a.output
    first, second = json.loads(a.stdout), json.loads(b.stdout)
    assert first == second and first["text"].startswith("ROMEO:") and first["new_tokens"] <= 20
    plain = apt_cli("generate", str(run), "ROMEO:", "--max-new-tokens", "10", "--temperature", "0")
    assert plain.exit_code == 0 and plain.stdout.startswith("ROMEO:")


def test_eval_reports_the_trainers_perplexity(trained, apt_cli, corpus):
    run, summary = trained
    result = apt_cli("eval", str(run), "--data", str(corpus), "--max-batches", "10", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["seq_len"] == 32 and data["perplexity"] > 1
    default = apt_cli("eval", str(run), "--max-batches", "3")
    assert default.exit_code == 0 and "perplexity" in default.stdout and "default:eval" in default.stdout


def test_info_reports_parameters_sparsity_and_size(trained, apt_cli):
    run, summary = trained
    result = apt_cli("info", str(run), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["parameters"] == summary["parameters"]
    assert data["weight_sparsity"] == 0.0 and data["step"] == 6
    assert data["size_on_disk"] == sum(data["files"].values()) > data["parameters"] * 4
    # Zero a quarter of one matrix and check the reported sparsity follows.
    from apt_core.checkpoint import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(run)
    with torch.no_grad():
        w = loaded.model.layers[0].ffn.w1.weight
        w[: w.shape[0] // 4].zero_()
        zeroed = w[: w.shape[0] // 4].numel()
    save_checkpoint(run.parent / "sparse", loaded.model, loaded.tokenizer)
    sparse = json.loads(apt_cli("info", str(run.parent / "sparse"), "--json").stdout)
    matrices = sum(p.numel() for p in loaded.model.parameters() if p.dim() >= 2)
    assert sparse["weight_sparsity"] == pytest.approx(zeroed / matrices)
    table = apt_cli("info", str(run))
    assert "weight sparsity" in table.stdout and "size on disk" in table.stdout


@pytest.mark.parametrize("damage", ["truncate", "garbage", "unknown_field", "invalid_field", "no_tokenizer",
                                    "missing"])
@pytest.mark.parametrize("command", ["generate", "eval", "info"])
def test_damaged_checkpoints_fail_with_one_line_and_exit_2(trained, apt_cli, damage, command, tmp_path):
    run, _ = trained
    ckpt = run / "checkpoint-0000006"
    weights, config = ckpt / "model.safetensors", ckpt / "config.json"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "garbage":
        weights.write_bytes(b"not a safetensors file at all")
    elif damage == "unknown_field":
        config.write_text(json.dumps({**json.loads(config.read_text()), "flux_capacitor": True}))
    elif damage == "invalid_field":
        config.write_text(json.dumps({**json.loads(config.read_text()), "n_layers": 0}))
    elif damage == "no_tokenizer":
        (ckpt / "tokenizer.json").unlink()
    elif damage == "missing":
        run = tmp_path / "nowhere"
    args = {"generate": ["generate", str(run), "hi"], "eval": ["eval", str(run)], "info": ["info", str(run)]}[command]
    result = apt_cli(*args)
    if damage == "no_tokenizer" and command == "info":
        assert result.exit_code == 0 and "missing" in result.stdout  # info works without a tokenizer
        return
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr


def test_export_uses_the_exporters_registry(trained, apt_pm, apt_cli, tmp_path):
    run, _ = trained
    seen = {}

    class Exporter:
        @hookimpl
        def apt_register_exporters(self, register):
            def export_copy(checkpoint, out, **options):
                seen.update(checkpoint=checkpoint, options=options)
                out.mkdir(parents=True)
                (out / "weights.bin").write_bytes((checkpoint / "model.safetensors").read_bytes())
                return out

            register("copy", export_copy)

    apt_pm(Exporter())
    result = apt_cli("export", str(run), str(tmp_path / "out"), "--format", "copy", "-o", "dtype=bf16", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["out"] == str(tmp_path / "out")
    assert seen["checkpoint"].name == "checkpoint-0000006" and seen["options"] == {"dtype": "bf16"}
    unknown = apt_cli("export", str(run), str(tmp_path / "o2"), "--format", "onnx")
    assert unknown.exit_code == 2 and "unknown export format 'onnx'" in unknown.stderr and "copy" in unknown.stderr


def test_command_modules_do_not_import_torch():
    code = ("import sys, apt_core.commands.train, apt_core.commands.generate, apt_core.commands.eval, "
            "apt_core.commands.info, apt_core.commands.export; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
