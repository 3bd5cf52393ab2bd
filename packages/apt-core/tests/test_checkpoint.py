"""Checkpoints: no pickle, atomic writes, `latest` pointer, clear errors on damaged files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

import apt_core.checkpoint as ckpt_module
from apt_core.checkpoint import (
    capture_rng_state,
    checkpoint_name,
    list_checkpoints,
    load_checkpoint,
    load_optimizer_state,
    remove_old_checkpoints,
    resolve_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from apt_core.errors import APTError
from apt_core.model import APTConfig, APTModel
from apt_core.tokenizer import APTTokenizer


def _trained_tiny():
    torch.manual_seed(0)
    model = APTModel(APTConfig.preset("tiny"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(4, 260, (2, 12))
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    return model, optimizer


@pytest.fixture
def run_dir(tmp_path):
    model, optimizer = _trained_tiny()
    save_checkpoint(tmp_path / checkpoint_name(1), model, APTTokenizer.byte_level(), optimizer,
                    {"step": 1, "rng": capture_rng_state()}, update_latest=True)
    return tmp_path


def test_checkpoint_contains_only_json_and_safetensors(run_dir):
    directory = resolve_checkpoint(run_dir)
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["config.json", "model.safetensors", "optimizer.json", "optimizer.safetensors",
                     "tokenizer.json", "trainer_state.json"]
    for path in directory.iterdir():
        data = path.read_bytes()
        assert b"\x80\x02" not in data[:2] and b"\x80\x04" not in data[:2]  # pickle protocol headers
        if path.suffix == ".json":
            json.loads(data)
        else:
            with safe_open(str(path), framework="pt") as fh:
                assert list(fh.keys())
    assert (run_dir / "latest").read_text().strip() == directory.name


def test_round_trip_model_tokenizer_optimizer(run_dir):
    model, optimizer = _trained_tiny()
    loaded = load_checkpoint(run_dir)
    ids = torch.randint(4, 260, (1, 9))
    assert torch.equal(loaded.model(ids).logits, model(ids).logits)
    assert loaded.tokenizer.vocab_size == 260 and loaded.trainer_state["step"] == 1
    fresh = torch.optim.AdamW(loaded.model.parameters(), lr=1e-3)
    load_optimizer_state(loaded.path, fresh)
    for index, values in optimizer.state_dict()["state"].items():
        for key, tensor in values.items():
            assert torch.equal(fresh.state_dict()["state"][index][key], tensor)


def test_optimizer_state_for_other_parameters_is_one_clear_error(run_dir):
    loaded = load_checkpoint(run_dir)
    params = list(loaded.model.parameters())
    split = torch.optim.AdamW([{"params": params[:3]}, {"params": params[3:]}], lr=1e-3)  # saved: one group
    before = [p.detach().clone() for p in params]
    with pytest.raises(APTError, match="does not match the model's parameters"):
        load_optimizer_state(loaded.path, split)
    assert split.state_dict()["state"] == {}  # nothing half-loaded
    assert all(torch.equal(a, b) for a, b in zip(before, params))


def test_rng_state_round_trip(run_dir):
    state = capture_rng_state()
    expected = torch.rand(3)
    restore_rng_state(json.loads(json.dumps(state)))
    assert torch.equal(torch.rand(3), expected)


def test_corrupt_and_truncated_weights_fail_with_one_line(run_dir):
    weights = resolve_checkpoint(run_dir) / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[: len(original) // 2])
    with pytest.raises(APTError, match="corrupt or truncated") as info:
        load_checkpoint(run_dir)
    assert "\n" not in str(info.value)
    weights.write_bytes(b"\xff" * 64)
    with pytest.raises(APTError, match="corrupt or truncated"):
        load_checkpoint(run_dir)


def test_unknown_or_invalid_config_fields_fail(run_dir):
    config = resolve_checkpoint(run_dir) / "config.json"
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "n_experts": 8}))
    with pytest.raises(APTError, match="unknown field.*n_experts"):
        load_checkpoint(run_dir)
    config.write_text(json.dumps({**data, "d_model": "wide"}))
    with pytest.raises(APTError, match="d_model"):
        load_checkpoint(run_dir)
    config.write_text(json.dumps({**data, "d_model": 64, "n_heads": 2}))
    with pytest.raises(APTError, match="do not match config.json"):
        load_checkpoint(run_dir)
    config.write_text("{")
    with pytest.raises(APTError, match="not valid JSON"):
        load_checkpoint(run_dir)


def test_missing_tokenizer_fails_unless_not_required(run_dir):
    (resolve_checkpoint(run_dir) / "tokenizer.json").unlink()
    with pytest.raises(APTError, match="missing tokenizer"):
        load_checkpoint(run_dir)
    assert load_checkpoint(run_dir, require_tokenizer=False).tokenizer is None


def test_failed_write_leaves_previous_checkpoint_and_pointer(run_dir, monkeypatch):
    before = {p.name: p.read_bytes() for p in resolve_checkpoint(run_dir).iterdir()}
    model, optimizer = _trained_tiny()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module, "_save_optimizer", explode)
    for name in (checkpoint_name(1), checkpoint_name(2)):
        with pytest.raises(OSError):
            save_checkpoint(run_dir / name, model, APTTokenizer.byte_level(), optimizer, {"step": 2},
                            update_latest=True)
    assert sorted(p.name for p in run_dir.iterdir()) == [checkpoint_name(1), "latest"]
    assert {p.name: p.read_bytes() for p in resolve_checkpoint(run_dir).iterdir()} == before


def test_resolve_and_retention(tmp_path):
    model, _ = _trained_tiny()
    for step in (5, 10, 15, 20):
        save_checkpoint(tmp_path / checkpoint_name(step), model, update_latest=step != 20)
    assert resolve_checkpoint(tmp_path).name == checkpoint_name(15)
    assert resolve_checkpoint(tmp_path / checkpoint_name(20)).name == checkpoint_name(20)
    removed = remove_old_checkpoints(tmp_path, keep_last=1)
    # The one `latest` names survives even when it is not among the newest.
    assert [p.name for p in list_checkpoints(tmp_path)] == [checkpoint_name(15), checkpoint_name(20)]
    assert len(removed) == 2
    (tmp_path / "latest").unlink()
    assert resolve_checkpoint(tmp_path).name == checkpoint_name(20)
    with pytest.raises(APTError, match="checkpoint not found"):
        resolve_checkpoint(tmp_path / "nope")
    (tmp_path / "latest").write_text("checkpoint-9999999\n")
    with pytest.raises(APTError, match="does not exist"):
        resolve_checkpoint(tmp_path)
