"""Unstructured pruning: reported sparsity is the real fraction of zeros, masks survive training."""

from __future__ import annotations

import pytest
import torch
from prune_testutils import make_model

from apt_core.errors import APTError
from apt_plugin_prune.calibration import collect_stats
from apt_plugin_prune.finetune import TokenData, finetune
from apt_plugin_prune.masks import MaskSet, compute_masks, importance_scores, prunable_weights
from apt_plugin_prune.pruning import PruneSettings, prune_model
from apt_plugin_prune.stats import sparsity_report


def _zero_fraction(model, names) -> float:
    params = dict(model.named_parameters())
    zeros = sum(int((params[n] == 0).sum()) for n in names)
    return zeros / sum(params[n].numel() for n in names)


@pytest.mark.parametrize("method,scope,nm", [
    ("magnitude", "layer", None), ("magnitude", "global", None), ("taylor", "global", None),
    ("wanda", "layer", None), ("random", "layer", None), ("magnitude", "layer", (2, 4)),
])
def test_reported_sparsity_is_the_fraction_of_zeros(method, scope, nm, calib_batches, monkeypatch):
    model = make_model()
    stats = collect_stats(model, calib_batches, taylor=method == "taylor", input_norms=method == "wanda")
    monkeypatch.setattr("apt_plugin_prune.pruning._calibrate", lambda *a: stats)
    pruned, masks, details = prune_model(model, PruneSettings(method=method, sparsity=0.6, scope=scope, nm=nm))
    names = list(prunable_weights(pruned))
    zeros = _zero_fraction(pruned, names)
    expected = 0.5 if nm else 0.6
    assert masks.sparsity == pytest.approx(expected, abs=0.01)  # per-row rounding (wanda)
    assert zeros == pytest.approx(masks.sparsity, abs=1e-9)
    report = sparsity_report(pruned)
    assert report["sparsity_prunable"] == pytest.approx(zeros, abs=1e-12)
    if scope == "layer":  # every tensor (every row for wanda) loses the same fraction
        for name, value in report["tensors"].items():
            assert value == pytest.approx(expected, abs=0.03), name  # rows of 16 keep 6
    # The embedding (tied LM head) is excluded by default.
    assert int((pruned.embed.weight == 0).sum()) == 0


def test_nm_pattern_keeps_n_of_every_m():
    model = make_model()
    _, masks, _ = prune_model(model, PruneSettings(method="magnitude", nm=(2, 4)))
    for name, mask in masks.masks.items():
        assert (mask.reshape(-1, 4).sum(dim=1) == 2).all(), name


def test_wanda_prunes_each_output_row_equally(calib_batches):
    model = make_model()
    stats = collect_stats(model, calib_batches, input_norms=True)
    weights = prunable_weights(model)
    masks = compute_masks(importance_scores("wanda", weights, stats), 0.5, per_row=True)
    for mask in masks.masks.values():
        assert (mask.sum(dim=1) == mask.shape[1] - round(0.5 * mask.shape[1])).all()


def test_scores_differ_by_criterion(calib_batches):
    model = make_model()
    stats = collect_stats(model, calib_batches, taylor=True, input_norms=True)
    weights = prunable_weights(model)
    kept = {m: compute_masks(importance_scores(m, weights, stats), 0.5).masks["layers.0.ffn.w1.weight"]
            for m in ("magnitude", "taylor", "wanda", "random")}
    assert not torch.equal(kept["magnitude"], kept["taylor"])
    assert not torch.equal(kept["magnitude"], kept["random"])


def test_repeated_pruning_prunes_what_remains():
    model = make_model()
    _, first, _ = prune_model(model, PruneSettings(method="random", sparsity=0.5, seed=1))
    _, second, _ = prune_model(model, PruneSettings(method="magnitude", sparsity=0.75))
    for name, mask in first.masks.items():
        assert not (mask.logical_not() & second.masks[name]).any(), "a pruned weight came back"
    assert second.sparsity == pytest.approx(0.75, abs=2e-3)


def test_pruning_a_whole_tensor_is_one_clear_error():
    scores = {"a": torch.full((4, 4), 0.01), "b": torch.ones(4, 4)}
    with pytest.raises(APTError, match="every weight of a"):
        compute_masks(scores, 0.5, scope="global")


@pytest.mark.parametrize("kwargs,message", [
    ({"sparsity": 1.0}, "in \\[0, 1\\)"), ({"sparsity": -0.1}, "in \\[0, 1\\)"),
    ({"sparsity": "half"}, "must be a number"), ({"method": "l0"}, "unknown pruning method"),
    ({"scope": "world"}, "unknown scope"), ({"structured": ("heads",), "nm": (2, 4)}, "N:M"),
])
def test_bad_settings_are_one_clear_error(kwargs, message):
    with pytest.raises(APTError, match=message):
        PruneSettings(**kwargs)


def _token_data() -> TokenData:
    generator = torch.Generator().manual_seed(0)
    return TokenData(torch.randint(0, 260, (4000,), generator=generator),
                     torch.randint(0, 260, (600,), generator=generator))


def test_masks_survive_finetuning_through_the_core_trainer(apt_pm):
    apt_pm()
    model = make_model()
    _, masks, _ = prune_model(model, PruneSettings(method="magnitude", sparsity=0.7))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    finetune(model, _token_data(), 4, masks=masks, lr=1e-2, batch_size=4, seq_len=32, progress=False, device="cpu")
    params = dict(model.named_parameters())
    for name, mask in masks.masks.items():
        assert (params[name][~mask] == 0).all(), f"{name}: a pruned weight was revived"
        assert not torch.equal(params[name][mask], before[name][mask]), f"{name}: survivors did not train"
    assert _zero_fraction(model, list(masks.masks)) == pytest.approx(masks.sparsity, abs=1e-4)


def test_without_masks_training_revives_zeros(apt_pm):
    """The control for the test above: plain training does fill the zeros in again."""
    apt_pm()
    model = make_model()
    _, masks, _ = prune_model(model, PruneSettings(method="magnitude", sparsity=0.7))
    finetune(model, _token_data(), 2, masks=None, lr=1e-2, batch_size=4, seq_len=32, progress=False, device="cpu")
    assert _zero_fraction(model, list(masks.masks)) < 0.1


def test_masks_from_zeros_round_trip():
    model = make_model()
    _, masks, _ = prune_model(model, PruneSettings(method="magnitude", sparsity=0.5))
    again = MaskSet.from_zeros(model, masks.masks)
    for name in masks.masks:
        assert torch.equal(again.masks[name], masks.masks[name])


def test_lower_target_than_existing_sparsity_keeps_existing_zeros():
    model = make_model()
    prune_model(model, PruneSettings(method="magnitude", sparsity=0.6))
    _, masks, _ = prune_model(model, PruneSettings(method="magnitude", sparsity=0.3))
    names = list(masks.masks)
    assert masks.sparsity == pytest.approx(_zero_fraction(model, names)) == pytest.approx(0.6, abs=2e-3)
