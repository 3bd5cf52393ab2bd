"""The distillation objective and the module the core Trainer trains.

:class:`DistillationModule` holds the student and (for feature distillation) the learned projections as
submodules -- so the Trainer's optimizer, gradient clipping and DDP see exactly the trainable parameters --
while the frozen teacher is held *outside* the module tree (not optimized, not synchronised, not saved).
Its ``state_dict()`` / ``config`` / ``load_weights`` are the student's, so a checkpoint the Trainer writes
is an ordinary APT checkpoint of the student.

The Trainer's ``loss_fn`` is :func:`distill_loss_fn`: it calls the (possibly DDP- or compile-wrapped)
module with ``distill=True``, so the whole objective runs inside the wrapper's ``forward`` -- which is
what DDP needs to all-reduce gradients.

    total = alpha * KD + (1 - alpha) * CE + w_feat * L_feat + w_rel * L_rel + w_attn * L_attn
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from apt_core.errors import APTError

from .features import FeatureProjections, attention_loss, feature_loss, layer_map
from .relation import relation_loss, sample_token_embeddings
from .response import DEFAULT_CHUNK_TOKENS, KL_KINDS, response_loss

__all__ = ["METHODS", "DistillSettings", "DistillationModule", "distill_loss_fn", "probe_teacher"]

#: ``response``: KD + CE. ``feature`` / ``relation``: plus that term. ``combined``: plus both.
#: An attention-map term is added to any method when ``attention_weight > 0``.
METHODS = ("response", "feature", "relation", "combined")


@dataclass
class DistillSettings:
    """Everything that defines the objective (the ``[plugins.distill]`` config section holds defaults)."""

    method: str = "response"
    temperature: float = 1.0
    #: Weight of the KD term; ``1 - alpha`` weighs the hard-label CE. ``alpha = 0`` is plain training.
    alpha: float = 0.9
    kl: str = "forward"
    feature_weight: float = 1.0
    relation_weight: float = 0.1
    attention_weight: float = 0.0
    #: Tokens sampled per micro-batch for the relation loss (its angle term is O(K^3)).
    relation_samples: int = 64
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise APTError(f"unknown distillation method {self.method!r} (use {', '.join(METHODS)})")
        if self.kl not in KL_KINDS:
            raise APTError(f"unknown KL direction {self.kl!r} (use {' or '.join(KL_KINDS)})")
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise APTError(f"alpha must be in [0, 1], got {self.alpha}")
        if not float(self.temperature) > 0:
            raise APTError(f"temperature must be positive, got {self.temperature}")
        for name in ("feature_weight", "relation_weight", "attention_weight"):
            if float(getattr(self, name)) < 0:
                raise APTError(f"{name} must be >= 0, got {getattr(self, name)}")
        if int(self.relation_samples) < 3:
            raise APTError("relation_samples must be at least 3 (angles need triplets)")
        if int(self.chunk_tokens) < 1:
            raise APTError("chunk_tokens must be positive")

    @property
    def uses_features(self) -> bool:
        return self.method in ("feature", "combined") and self.feature_weight > 0

    @property
    def uses_relation(self) -> bool:
        return self.method in ("relation", "combined") and self.relation_weight > 0

    @property
    def uses_attention(self) -> bool:
        return self.attention_weight > 0

    @property
    def needs_teacher(self) -> bool:
        return self.alpha > 0 or self.uses_features or self.uses_relation or self.uses_attention

    def to_dict(self) -> dict:
        return asdict(self)


def probe_teacher(teacher: nn.Module) -> tuple[int, int]:
    """``(number of blocks, hidden width)`` of any causal LM, from one tiny forward pass."""
    device = next(teacher.parameters()).device
    with torch.no_grad():
        out = teacher(torch.zeros(1, 2, dtype=torch.long, device=device), output_hidden_states=True)
    hidden = getattr(out, "hidden_states", None)
    if not hidden:
        raise APTError(f"teacher {type(teacher).__name__} returns no hidden states; use --method response")
    return len(hidden) - 1, hidden[-1].shape[-1]


class DistillationModule(nn.Module):
    """Student (+ projections) as the trained module; the frozen teacher rides along unregistered."""

    def __init__(self, student: nn.Module, teacher: nn.Module | None, settings: DistillSettings,
                 teacher_shape: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.student = student
        self.settings = settings
        # Plain attribute via __dict__: nn.Module would otherwise register it (optimizer, DDP, state_dict).
        self.__dict__["teacher"] = teacher
        if settings.needs_teacher and teacher is None:
            raise APTError("this distillation method needs a teacher")
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)
        self.pairs: list[tuple[int, int]] = []
        self.projections: FeatureProjections | None = None
        if settings.uses_features or settings.uses_attention:
            t_layers, t_width = teacher_shape or probe_teacher(teacher)
            self.pairs = layer_map(student.config.n_layers, t_layers)
        if settings.uses_features:
            # A fixed generator: every DDP rank must build identical projections.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(1234)
                self.projections = FeatureProjections(student.config.d_model, t_width, self.pairs)
        if settings.uses_attention and not hasattr(teacher, "layers"):
            raise APTError("attention distillation needs an APT teacher")

    # ---------------------------------------------------------------- the student's face
    @property
    def config(self):
        return self.student.config

    def state_dict(self, *args, **kwargs):  # checkpoints hold the student only
        return self.student.state_dict(*args, **kwargs)

    def load_weights(self, state, source="state dict") -> None:
        self.student.load_weights(state, source=source)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.student.parameters())

    # ---------------------------------------------------------------- forward
    def forward(self, input_ids, labels=None, attention_mask=None, output_hidden_states=False, distill=False, **kw):
        """The student's forward; with ``distill=True`` the distillation loss ``(loss, metrics)`` instead."""
        if not distill:
            return self.student(input_ids, labels=labels, attention_mask=attention_mask,
                                output_hidden_states=output_hidden_states, **kw)
        return self._objective(input_ids, input_ids if labels is None else labels, attention_mask)

    def _teacher_outputs(self, input_ids, attention_mask, need_hidden: bool):
        teacher = self.teacher
        param = next(teacher.parameters())
        if param.device != input_ids.device:
            teacher.to(input_ids.device)
        if (input_ids.device.type == "cuda" and torch.is_autocast_enabled("cuda")
                and torch.get_autocast_dtype("cuda") == torch.bfloat16 and param.dtype != torch.bfloat16):
            # Frozen and run under bf16 autocast anyway: bf16 weights halve its memory and traffic.
            teacher.to(dtype=torch.bfloat16)
        kwargs = {"output_hidden_states": True} if need_hidden else {}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        with torch.no_grad():
            return teacher(input_ids, **kwargs)

    def _objective(self, input_ids, labels, attention_mask):
        s = self.settings
        need_hidden = s.uses_features or s.uses_relation or s.uses_attention
        student_out = self.student(input_ids, attention_mask=attention_mask, output_hidden_states=need_hidden)
        teacher_out = self._teacher_outputs(input_ids, attention_mask, need_hidden) if s.needs_teacher else None
        if teacher_out is not None and teacher_out.logits.shape[-1] != student_out.logits.shape[-1]:
            raise APTError(f"teacher vocabulary ({teacher_out.logits.shape[-1]}) and student vocabulary "
                           f"({student_out.logits.shape[-1]}) differ; distillation needs the same tokenizer")
        response = response_loss(
            student_out.logits, None if (teacher_out is None or s.alpha == 0) else teacher_out.logits, labels,
            attention_mask, temperature=s.temperature, alpha=s.alpha, kind=s.kl, chunk_tokens=s.chunk_tokens)
        loss = response.loss
        metrics = {"kd": response.kd, "ce": response.ce}
        if s.uses_features:
            feat = feature_loss(student_out.hidden_states, teacher_out.hidden_states, self.projections, attention_mask)
            loss = loss + s.feature_weight * feat
            metrics["feature"] = feat.detach()
        if s.uses_relation:
            emb_s, emb_t = sample_token_embeddings(student_out.hidden_states[-1], teacher_out.hidden_states[-1],
                                                   attention_mask, s.relation_samples)
            rel = relation_loss(emb_s, emb_t)
            loss = loss + s.relation_weight * rel
            metrics["relation"] = rel.detach()
        if s.uses_attention:
            att = attention_loss(self.student, self.teacher, student_out.hidden_states, teacher_out.hidden_states,
                                 self.pairs, attention_mask)
            loss = loss + s.attention_weight * att
            metrics["attention"] = att.detach()
        return loss, metrics


def distill_loss_fn(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
    """The Trainer's ``loss_fn``: the objective through the (wrapped) module's own forward."""
    return model(batch["input_ids"], labels=batch.get("labels"), attention_mask=batch.get("attention_mask"),
                 distill=True)
