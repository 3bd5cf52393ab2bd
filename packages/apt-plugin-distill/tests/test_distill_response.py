"""Response-distillation loss: direction, T^2 scaling, masking, shifting, length invariance, chunking, gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from apt_core.errors import APTError
from apt_plugin_distill.response import response_loss


def _softmax(row, temperature):
    exps = [math.exp(v / temperature) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def _hand_kl(student, teacher, labels, mask, temperature, reverse=False):
    """Plain-Python sum over counted positions and vocabulary, divided by the number of positions."""
    total, count = 0.0, 0
    for b in range(len(labels)):
        for i in range(len(labels[b]) - 1):
            if labels[b][i + 1] == -100 or not (mask[b][i] and mask[b][i + 1]):
                continue
            p = _softmax(teacher[b][i], temperature)
            q = _softmax(student[b][i], temperature)
            if reverse:
                p, q = q, p
            total += sum(pv * (math.log(pv) - math.log(qv)) for pv, qv in zip(p, q, strict=True))
            count += 1
    return temperature**2 * total / count


@pytest.fixture
def batch():
    torch.manual_seed(0)
    bsz, seq, vocab = 2, 6, 5
    student = torch.randn(bsz, seq, vocab, dtype=torch.float64) * 2
    teacher = torch.randn(bsz, seq, vocab, dtype=torch.float64) * 2
    labels = torch.randint(0, vocab, (bsz, seq))
    labels[0, 3] = -100
    mask = torch.ones(bsz, seq, dtype=torch.long)
    mask[1, 4:] = 0  # right padding
    return student, teacher, labels, mask


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
@pytest.mark.parametrize("kind", ["forward", "reverse"])
def test_kl_matches_hand_computed_sum(batch, temperature, kind):
    student, teacher, labels, mask = batch
    got = response_loss(student, teacher, labels, mask, temperature=temperature, alpha=1.0, kind=kind)
    want = _hand_kl(student.tolist(), teacher.tolist(), labels.tolist(), mask.tolist(), temperature,
                    reverse=kind == "reverse")
    assert got.loss.item() == pytest.approx(want, rel=1e-9)
    assert got.kd.item() == pytest.approx(want, rel=1e-9)
    # The counted positions: 2*5 shifted positions, minus one ignored label, minus 2 touching padding.
    assert got.num_tokens == 10 - 1 - 2


def test_forward_is_kl_teacher_to_student_not_the_reverse(batch):
    student, teacher, labels, mask = batch
    forward = response_loss(student, teacher, labels, mask, temperature=1.0, alpha=1.0, kind="forward").loss.item()
    reverse = response_loss(student, teacher, labels, mask, temperature=1.0, alpha=1.0, kind="reverse").loss.item()
    by_hand = _hand_kl(student.tolist(), teacher.tolist(), labels.tolist(), mask.tolist(), 1.0)
    assert forward == pytest.approx(by_hand)
    assert abs(forward - reverse) > 1e-3  # the two directions really differ on this batch
    # Same as torch's kl_div(log q, log p, log_target=True) = KL(p || q) with p the teacher.
    valid = (labels[:, 1:] != -100) & mask[:, 1:].bool() & mask[:, :-1].bool()
    s, t = student[:, :-1][valid], teacher[:, :-1][valid]
    ref = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="sum") / len(s)
    assert forward == pytest.approx(ref.item())


def test_temperature_squared_scaling(batch):
    student, teacher, labels, mask = batch
    t = 3.0
    scaled = response_loss(student, teacher, labels, mask, temperature=t, alpha=1.0).loss.item()
    # The un-scaled KL of the softened distributions, times T^2.
    valid = (labels[:, 1:] != -100) & mask[:, 1:].bool() & mask[:, :-1].bool()
    s, te = student[:, :-1][valid] / t, teacher[:, :-1][valid] / t
    plain = (F.softmax(te, -1) * (F.log_softmax(te, -1) - F.log_softmax(s, -1))).sum(-1).mean().item()
    assert scaled == pytest.approx(t * t * plain)


def test_alpha_mixes_hard_label_cross_entropy(batch):
    student, teacher, labels, mask = batch
    kd = response_loss(student, teacher, labels, mask, alpha=1.0).loss.item()
    ce = response_loss(student, teacher, labels, mask, alpha=0.0).loss.item()
    mixed = response_loss(student, teacher, labels, mask, alpha=0.3)
    assert mixed.loss.item() == pytest.approx(0.3 * kd + 0.7 * ce)
    assert mixed.ce.item() == pytest.approx(ce)
    # CE uses shifted labels exactly like the model's own loss.
    ignored = labels.masked_fill(mask == 0, -100)
    ref = F.cross_entropy(student[:, :-1].reshape(-1, 5), ignored[:, 1:].reshape(-1), ignore_index=-100)
    assert ce == pytest.approx(ref.item())
    # CE-only needs no teacher at all.
    assert response_loss(student, None, labels, mask, alpha=0.0).loss.item() == pytest.approx(ce)


def test_padding_positions_change_nothing(batch):
    student, teacher, labels, mask = batch
    student = student.clone().requires_grad_(True)
    base = response_loss(student, teacher, labels, mask, alpha=0.5)
    (grad,) = torch.autograd.grad(base.loss, student)
    # Scribble over everything at padded positions (logits of both models and labels).
    pad = mask == 0
    s2 = student.detach().clone()
    s2[pad] = torch.randn_like(s2[pad]) * 50
    t2 = teacher.clone()
    t2[pad] = torch.randn_like(t2[pad]) * 50
    l2 = labels.clone()
    l2[pad] = 3
    s2.requires_grad_(True)
    other = response_loss(s2, t2, l2, mask, alpha=0.5)
    (grad2,) = torch.autograd.grad(other.loss, s2)
    assert other.loss.item() == pytest.approx(base.loss.item(), rel=1e-12)
    assert torch.allclose(grad, grad2)
    assert grad[pad].abs().max() == 0  # no gradient flows into padded positions


def test_per_token_loss_does_not_grow_with_sequence_length():
    torch.manual_seed(1)
    vocab = 7
    s_row, t_row = torch.randn(vocab), torch.randn(vocab)
    values = []
    for seq in (4, 16, 64):
        student = s_row.expand(3, seq, vocab).clone()
        teacher = t_row.expand(3, seq, vocab).clone()
        labels = torch.full((3, seq), 2)
        values.append(response_loss(student, teacher, labels, temperature=2.0, alpha=0.5).loss.item())
    assert values[0] == pytest.approx(values[1]) == pytest.approx(values[2])


@pytest.mark.parametrize("chunk", [1, 3, 10_000])
@pytest.mark.parametrize("kind", ["forward", "reverse"])
def test_chunked_gradient_matches_autograd(batch, chunk, kind):
    student, teacher, labels, mask = batch
    s = student.clone().requires_grad_(True)
    got = response_loss(s, teacher, labels, mask, temperature=2.0, alpha=0.7, kind=kind, chunk_tokens=chunk)
    (grad,) = torch.autograd.grad(got.loss * 3.0, s)  # an upstream scale must reach the gradient

    r = student.clone().requires_grad_(True)
    valid = (labels[:, 1:] != -100) & mask[:, 1:].bool() & mask[:, :-1].bool()
    sv, tv, yv = r[:, :-1][valid], teacher[:, :-1][valid], labels[:, 1:][valid]
    log_q, log_p = F.log_softmax(sv / 2.0, -1), F.log_softmax(tv / 2.0, -1)
    if kind == "forward":
        kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean() * 4.0
    else:
        kl = (log_q.exp() * (log_q - log_p)).sum(-1).mean() * 4.0
    ref = 0.7 * kl + 0.3 * F.cross_entropy(sv, yv)
    (ref_grad,) = torch.autograd.grad(ref * 3.0, r)
    assert got.loss.item() == pytest.approx(ref.item(), rel=1e-10)
    assert torch.allclose(grad, ref_grad, atol=1e-12)


def test_bf16_logits_keep_their_dtype_and_agree():
    torch.manual_seed(2)
    student = torch.randn(2, 8, 50)
    teacher = torch.randn(2, 8, 50)
    labels = torch.randint(0, 50, (2, 8))
    full = response_loss(student, teacher, labels).loss.item()
    s16 = student.to(torch.bfloat16).requires_grad_(True)
    half = response_loss(s16, teacher.to(torch.bfloat16), labels)
    half.loss.backward()
    assert s16.grad.dtype == torch.bfloat16
    assert half.loss.dtype == torch.float32
    assert half.loss.item() == pytest.approx(full, rel=2e-2)


def test_errors_are_clear():
    s = torch.randn(1, 4, 6)
    with pytest.raises(APTError, match="vocabulary sizes must match"):
        response_loss(s, torch.randn(1, 4, 7), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(APTError, match="KL direction"):
        response_loss(s, s, torch.zeros(1, 4, dtype=torch.long), kind="sideways")
    with pytest.raises(APTError, match="alpha"):
        response_loss(s, s, torch.zeros(1, 4, dtype=torch.long), alpha=1.5)
