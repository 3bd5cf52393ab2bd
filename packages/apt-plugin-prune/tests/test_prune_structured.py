"""Structured pruning: exact surgery, real shrinking, ordinary checkpoints."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from prune_testutils import make_model

from apt_core.errors import APTError
from apt_core.model import APTModel
from apt_plugin_prune.calibration import collect_stats
from apt_plugin_prune.structured import apply_structured, plan_structured, zero_removed

TARGETS = [("heads",), ("ffn",), ("rank",), ("heads", "ffn"), ("heads", "ffn", "rank")]


def _check_equivalent(model, targets, method="magnitude", engine="torch-pruning", stats=None, **plan_kw):
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(3))
    plan = plan_structured(model, targets, 0.5, method, stats, **plan_kw)
    reference = copy.deepcopy(model)
    zero_removed(reference, plan)
    pruned = apply_structured(copy.deepcopy(model), plan, engine).eval()
    with torch.no_grad():
        expected, got = reference(ids).logits, pruned(ids).logits
        original = model(ids).logits
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    # The removed channels mattered (100x the tolerance above), so the equality proves something.
    assert (original - expected).abs().max() > 1e-4
    return pruned, plan


@pytest.mark.parametrize("targets", TARGETS, ids=["+".join(t) for t in TARGETS])
@pytest.mark.parametrize("engine", ["torch-pruning", "slice"])
def test_pruned_logits_equal_original_with_removed_channels_zeroed(targets, engine):
    _check_equivalent(make_model(), targets, engine=engine)


@pytest.mark.parametrize("overrides", [
    {"position_encoding": "rope"}, {"autopoietic": False}, {"left_spin": False, "norm_placement": "post"},
    {"tie_embeddings": False},
], ids=["rope", "no-autopoietic", "post-norm", "untied"])
def test_equivalence_holds_across_architecture_switches(overrides):
    targets = ("heads", "ffn") if overrides.get("autopoietic") is False else ("heads", "ffn", "rank")
    _check_equivalent(make_model(**overrides), targets)


@pytest.mark.parametrize("method", ["taylor", "wanda", "random"])
def test_equivalence_for_every_criterion(method, calib_batches):
    model = make_model()
    stats = collect_stats(model, calib_batches, taylor=method == "taylor", input_norms=method == "wanda")
    _check_equivalent(model, ("heads", "ffn", "rank"), method, stats=stats)


def test_tensors_and_config_really_shrink():
    model = make_model()
    pruned, plan = _check_equivalent(model, ("heads", "ffn"), round_to=8)
    config = pruned.config
    assert config.n_heads == [2, 2] and config.d_ff == [48, 48] and config.head_dim == 16
    layer = pruned.layers[0]
    assert layer.attn.qkv.weight.shape == (3 * 2 * 16, 64)
    assert layer.attn.out.weight.shape == (64, 32)
    assert layer.attn.ap_up.weight.shape[0] == 32 and layer.attn.ap_gate.weight.shape == (2, 64)
    assert layer.ffn.w1.weight.shape == (48, 64) and layer.ffn.w3.weight.shape == (64, 48)
    assert pruned.num_parameters() < model.num_parameters()
    assert config.num_parameters() == pruned.num_parameters()


def test_round_to_gives_hardware_friendly_widths():
    model = make_model(d_ff=100)
    plan = plan_structured(model, ("ffn",), 0.3, round_to=16)
    assert all(len(kept) % 16 == 0 for kept in plan.ffn) and all(len(kept) == 80 for kept in plan.ffn)


def test_rank_pruning_changes_sr_ratio():
    model = make_model()  # d_model 64, sr_ratio 4 -> rank 16
    pruned, _ = _check_equivalent(model, ("rank",))
    assert pruned.config.autopoietic_rank == 8 and pruned.config.sr_ratio == 8


def test_tied_embedding_stays_tied():
    model = make_model()
    pruned, _ = _check_equivalent(model, ("heads", "ffn"))
    assert pruned.lm_head is None and "lm_head.weight" not in pruned.state_dict()
    assert pruned.config.tie_embeddings is True
    torch.testing.assert_close(pruned.embed.weight, model.embed.weight)


def test_global_scope_lets_layers_differ():
    model = make_model()
    with torch.no_grad():
        model.layers[1].ffn.w1.weight.mul_(0.01)  # layer 1's FFN is far less important
        model.layers[1].ffn.w2.weight.mul_(0.01)
    plan = plan_structured(model, ("ffn",), 0.5, scope="global", round_to=1)
    assert len(plan.ffn[1]) < len(plan.ffn[0])


@pytest.mark.parametrize("targets,sparsity,match", [
    (("heads",), 0.9, "every attention head of layer 0"),
    (("ffn",), 0.999, "every FFN channel of layer 0"),
    (("rank",), 0.01, "cannot shrink"),
])
def test_pruning_everything_of_a_layer_is_one_clear_error(targets, sparsity, match):
    with pytest.raises(APTError, match=match):
        plan_structured(make_model(), targets, sparsity, round_to=1)


def test_pruned_checkpoint_reloads_and_contains_no_pickle(tmp_path):
    from apt_core.checkpoint import load_checkpoint, save_checkpoint

    pruned, _ = _check_equivalent(make_model(), ("heads", "ffn", "rank"))
    path = save_checkpoint(tmp_path / "pruned", pruned)
    config = json.loads((path / "config.json").read_text())
    assert config["n_heads"] == [2, 2] and config["d_ff"] == [48, 48] and config["sr_ratio"] == 8
    reloaded = APTModel.from_pretrained(path)
    ids = torch.randint(0, 260, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, pruned(ids).logits)
    assert load_checkpoint(path, require_tokenizer=False).model.config.n_heads == [2, 2]
    _assert_no_pickle(path)


def _assert_no_pickle(path):
    for file in path.iterdir():
        assert file.suffix in (".json", ".safetensors"), f"unexpected file {file.name}"
        head = file.read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK", f"{file.name} looks like a pickle / torch.save archive"
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    assert not any(k.endswith(("weight_orig", "weight_mask")) for k in keys)
