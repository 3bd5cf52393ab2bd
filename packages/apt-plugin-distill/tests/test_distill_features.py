"""Feature, attention and relation (RKD) losses: zero for identical inputs, invariances, gradients, layer map."""

import math

import pytest
import torch

from apt_core import APTConfig, APTModel
from apt_core.errors import APTError
from apt_plugin_distill.features import (
    FeatureProjections,
    apt_attention_probs,
    attention_loss,
    feature_loss,
    layer_map,
)
from apt_plugin_distill.relation import relation_loss, rkd_angle, rkd_distance, sample_token_embeddings


def test_layer_map_is_ceil_and_ends_at_the_last_teacher_block():
    assert layer_map(2, 4) == [(1, 2), (2, 4)]
    assert layer_map(3, 4) == [(1, 2), (2, 3), (3, 4)]
    assert layer_map(4, 4) == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert layer_map(3, 8) == [(1, math.ceil(8 / 3)), (2, math.ceil(16 / 3)), (3, 8)]
    with pytest.raises(APTError):
        layer_map(0, 4)


def _hidden(bsz=2, seq=5, width=8, layers=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(bsz, seq, width, generator=g) for _ in range(layers + 1))


def test_feature_loss_zero_for_identical_states_and_has_gradients():
    hidden = _hidden()
    proj = FeatureProjections(8, 8, layer_map(3, 3))
    assert feature_loss(hidden, hidden, proj).item() == pytest.approx(0.0, abs=1e-10)
    student = tuple(h.clone().requires_grad_(True) for h in _hidden(seed=1))
    loss = feature_loss(student, hidden, proj)
    loss.backward()
    assert loss.item() > 0.1
    assert all(h.grad is not None and h.grad.abs().sum() > 0 for h in student[1:])
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in proj.parameters())


def test_feature_loss_ignores_scale_and_padding_and_handles_other_widths():
    hidden = _hidden()
    proj = FeatureProjections(8, 8, layer_map(3, 3))
    scaled = tuple(3.0 * h for h in hidden)  # normalised states: the teacher's scale does not matter
    assert feature_loss(scaled, hidden, proj).item() == pytest.approx(0.0, abs=1e-8)
    mask = torch.ones(2, 5, dtype=torch.long)
    mask[0, 3:] = 0
    noisy = tuple(h.clone() for h in hidden)
    for h in noisy:
        h[0, 3:] = 100.0  # garbage only where the mask says padding
    assert feature_loss(noisy, hidden, proj, mask).item() == pytest.approx(0.0, abs=1e-8)
    wide = _hidden(width=12, layers=6, seed=3)
    proj2 = FeatureProjections(8, 12, layer_map(3, 6))
    assert feature_loss(hidden, wide, proj2).item() > 0


@pytest.mark.parametrize("fn", [rkd_distance, rkd_angle, relation_loss])
def test_relation_losses_zero_for_identical_inputs_and_have_gradients(fn):
    torch.manual_seed(0)
    teacher = torch.randn(10, 16)
    assert fn(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-7)
    student = torch.randn(10, 6, requires_grad=True)  # other width: no projection needed
    loss = fn(student, teacher)
    loss.backward()
    assert loss.item() > 0
    assert student.grad is not None and student.grad.abs().sum() > 0 and torch.isfinite(student.grad).all()


def test_relation_is_invariant_to_scale_rotation_and_translation():
    torch.manual_seed(0)
    teacher = torch.randn(12, 8)
    rotation, _ = torch.linalg.qr(torch.randn(8, 8))
    student = 2.5 * teacher @ rotation + 1.0  # same geometry
    assert relation_loss(student, teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_sampling_takes_the_same_real_tokens_on_both_sides():
    s = torch.arange(2 * 6).float().view(2, 6, 1).expand(2, 6, 3)
    t = torch.arange(2 * 6).float().view(2, 6, 1).expand(2, 6, 5) * 10
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 2:] = 0
    es, et = sample_token_embeddings(s, t, mask, num_samples=5)
    assert len(es) == 5
    assert torch.equal(es[:, 0] * 10, et[:, 0])
    assert not set(es[:, 0].tolist()) & {8.0, 9.0, 10.0, 11.0}  # never a padded position


def _tiny_apt(seed=0, **changes):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=40, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_seq_len=16)
    cfg.update(changes)
    return APTModel(APTConfig(**cfg)).eval()


@pytest.mark.parametrize("position_encoding", ["sinusoidal", "rope"])
def test_recomputed_attention_probabilities_are_the_models_own(position_encoding):
    model = _tiny_apt(autopoietic=False, position_encoding=position_encoding)
    ids = torch.randint(0, 40, (2, 7))
    out = model(ids, output_hidden_states=True)
    probs = apt_attention_probs(model, out.hidden_states, 1)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 2, 7))
    assert probs.triu(diagonal=1).abs().max() == 0  # causal
    # probs @ v through the output projection reproduces the block's attention output.
    block = model.layers[0]
    x = block.attn_norm(out.hidden_states[0])
    _, _, v = block.attn.qkv(x).view(2, 7, 3, 2, 8).unbind(dim=2)
    mine = block.attn.out((probs @ v.transpose(1, 2)).transpose(1, 2).reshape(2, 7, 16))
    theirs = block.attn(x, None if position_encoding == "sinusoidal" else
                        (model.rope_cos[:7], model.rope_sin[:7]), None, None, None)
    assert torch.allclose(mine, theirs, atol=1e-5)


def test_attention_loss_zero_for_the_same_model_positive_otherwise():
    teacher = _tiny_apt(seed=0, n_heads=4)
    ids = torch.randint(0, 40, (2, 6))
    t_out = teacher(ids, output_hidden_states=True)
    pairs = layer_map(2, 2)
    same = attention_loss(teacher, teacher, t_out.hidden_states, t_out.hidden_states, pairs)
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    student = _tiny_apt(seed=1, n_heads=2).train()  # 4 teacher heads -> pairs of heads averaged
    s_out = student(ids, output_hidden_states=True)
    loss = attention_loss(student, teacher, s_out.hidden_states, t_out.hidden_states, pairs)
    loss.backward()
    assert loss.item() > 0
    assert student.layers[0].attn.qkv.weight.grad.abs().sum() > 0
    odd = _tiny_apt(seed=2, d_model=18, n_heads=3)
    o_out = odd(ids, output_hidden_states=True)
    with pytest.raises(APTError, match="multiple"):
        attention_loss(student, odd, s_out.hidden_states, o_out.hidden_states, pairs)
