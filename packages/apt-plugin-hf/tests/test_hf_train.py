"""``apt-model hf train`` (transformers.Trainer) and ``auto_upload`` after a core training run."""

from __future__ import annotations

import json


def _jsonl(path, n=20):
    from pydoc_data.topics import topics

    texts = [topics[k] for k in sorted(topics)][:n]
    path.write_text("".join(json.dumps({"content": t[:1000]}) + "\n" for t in texts), encoding="utf-8")
    return path


def test_hf_train_writes_a_checkpoint_that_apt_eval_reads(apt_cli, tmp_path):
    from apt_core.checkpoint import read_trainer_state, resolve_checkpoint

    data = _jsonl(tmp_path / "docs.jsonl")
    run = tmp_path / "run"
    result = apt_cli("hf", "train", "--data", f"hf:{data}", "--text-field", "content", "--config", "tiny",
                     "--steps", "6", "--batch-size", "4", "--seq-len", "32", "--eval-every", "3", "--save-every", "3",
                     "--out", run, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 6 and summary["eval_loss"] is not None
    checkpoint = resolve_checkpoint(run)
    assert checkpoint.name == "checkpoint-0000006" and (run / "checkpoint-0000003").is_dir()
    assert not list(run.rglob("*.pt")) and not list(run.rglob("*.bin")), "no pickled files"
    state = read_trainer_state(checkpoint)
    assert state["step"] == 6 and state["trainer"] == "transformers.Trainer" and state["data"] == [f"hf:{data}"]
    assert len(state["eval_history"]) >= 2

    evaluated = apt_cli("eval", run, "--data", f"hf:{data}", "--text-field", "content", "--max-batches", "2", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert report["seq_len"] == 32 and report["perplexity"] > 1


def test_hf_train_learns_from_an_apt_init(apt_cli, apt_checkpoint, tmp_path):
    """Training lowers the loss, and --init carries the checkpoint's weights and tokenizer over."""
    from apt_core.checkpoint import load_checkpoint

    data = tmp_path / "doc.txt"
    data.write_text("abc abd abe " * 400)
    run = tmp_path / "run"
    result = apt_cli("hf", "train", "--init", apt_checkpoint, "--data", data, "--steps", "15", "--seq-len", "32",
                     "--lr", "0.01", "--out", run, "--json")
    assert result.exit_code == 0, result.output
    trained = load_checkpoint(run)
    assert trained.tokenizer.backend.to_str() == load_checkpoint(apt_checkpoint).tokenizer.backend.to_str()
    history = trained.trainer_state["metrics"]
    assert history["train_loss"] < 5.0  # ln(300) = 5.7 is what an untrained model scores
    refuse = apt_cli("hf", "train", "--data", data, "--steps", "1", "--out", run)
    assert refuse.exit_code == 2 and "already holds a run" in refuse.stderr


def test_auto_upload_pushes_the_final_checkpoint_after_core_training(apt_cli, hub, tmp_path, monkeypatch):
    monkeypatch.setenv("APT_HF__AUTO_UPLOAD", "tester/auto")
    data = tmp_path / "doc.txt"
    data.write_text("to be or not to be " * 200)
    result = apt_cli("train", "--config", "tiny", "--steps", "2", "--data", data, "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    repo = hub.repo("tester/auto")
    assert repo is not None
    files = repo.commits[repo.branches["main"]].files
    assert {"config.json", "modeling_apt.py", "model.safetensors", "tokenizer.json", "README.md"} <= set(files)
    config = json.loads(hub.file_bytes(files["config.json"]))
    assert config["model_type"] == "apt"


def test_auto_upload_failure_keeps_the_checkpoint_and_says_how_to_retry(apt_cli, hub, tmp_path, monkeypatch):
    monkeypatch.setenv("APT_HF__AUTO_UPLOAD", "someone-else/auto")
    data = tmp_path / "doc.txt"
    data.write_text("to be or not to be " * 200)
    result = apt_cli("train", "--config", "tiny", "--steps", "1", "--data", data, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "training finished" in result.stderr and "permission denied" in result.stderr
    assert "apt-model hf export" in result.stderr
    assert (tmp_path / "run" / "latest").is_file()
