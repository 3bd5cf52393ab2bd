"""The APT (Autopoietic Transformer) decoder-only language model.

Layout (names matter to plugins that prune, distil or export; see docs/architecture.md):

* ``embed`` token embedding, tied to the LM head unless ``tie_embeddings`` is false (then ``lm_head``).
* ``layers[i].attn.qkv`` fused projection, output rows ordered ``[q | k | v]``, each ``[head, head_dim]``;
  ``layers[i].attn.out``; autopoietic term ``ap_down`` (U: d->r), ``ap_up`` (V: r->heads*head_dim),
  ``ap_gate`` (d->heads, sigmoid of the causal prefix mean of x) and ``ap_tau``.
* ``layers[i].ffn.w1`` (value), ``w2`` (gate, through the activation), ``w3`` (down): ``(x W1 * act(x W2)) W3``.
* ``layers[i].attn_norm``, ``layers[i].ffn_norm``, final ``norm`` (RMSNorm).

Everything is causal: attention uses ``is_causal=True`` (or an explicit causal+padding mask), the gate
sees the prefix mean of positions <= t, and the left-spin residual is a per-token function with no
state carried across positions or batches, identical in train and eval mode. The forward pass has no
data-dependent Python branches and no host syncs, so ``torch.compile`` traces it in one graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from apt_core.errors import APTError
from apt_core.model.config import APTConfig
from apt_core.model.serialization import read_safetensors, write_safetensors

__all__ = ["APTModel", "APTOutput", "APTCache", "RMSNorm"]

_ACTIVATIONS = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu}


@dataclass
class APTOutput:
    """What :meth:`APTModel.forward` returns."""

    #: ``None`` only when asked for the loss alone (``return_logits=False``).
    logits: torch.Tensor | None
    loss: torch.Tensor | None = None
    #: Embeddings (with sinusoidal positions added) and the output of every block, before the final norm.
    hidden_states: tuple[torch.Tensor, ...] | None = None
    past_key_values: APTCache | None = None


class APTCache:
    """KV cache for incremental decoding.

    Besides keys and values, each layer keeps the running sum of its gate input x and the number of
    positions seen, because the autopoietic gate at position t uses the prefix mean of x over <= t.
    """

    def __init__(self, n_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        self.x_sum: list[torch.Tensor | None] = [None] * n_layers
        self.count: list[torch.Tensor | None] = [None] * n_layers

    @property
    def seq_len(self) -> int:
        """Number of positions already in the cache."""
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def update_kv(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned gain."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def _sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)[:, : dim // 2]
    return table


def _rope_tables(length: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)  # [T, head_dim], halves repeated
    return angles.cos(), angles.sin()


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # rotate_half via roll instead of chunk+cat: same maths, and torch-pruning can trace it.
    half = x.shape[-1] // 2
    sign = torch.cat([-torch.ones(half, device=x.device, dtype=x.dtype), torch.ones(half, device=x.device, dtype=x.dtype)])
    return x * cos + torch.roll(x, shifts=half, dims=-1) * sign * sin


class APTAttention(nn.Module):
    """Causal multi-head attention with the autopoietic term added per head before ``out``."""

    def __init__(self, config: APTConfig, n_heads: int, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads = n_heads
        self.head_dim = config.resolved_head_dim
        self.dropout = config.dropout
        inner = n_heads * self.head_dim
        d = config.d_model
        self.qkv = nn.Linear(d, 3 * inner, bias=False)
        self.out = nn.Linear(inner, d, bias=False)
        self.autopoietic = config.autopoietic
        if self.autopoietic:
            self.alpha = config.autopoietic_alpha
            self.ap_down = nn.Linear(d, config.autopoietic_rank, bias=False)
            self.ap_up = nn.Linear(config.autopoietic_rank, inner, bias=False)
            self.ap_gate = nn.Linear(d, n_heads, bias=True)
            self.ap_tau = nn.Parameter(torch.tensor(float(config.autopoietic_tau_init)))

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        attn_mask: torch.Tensor | None,
        token_mask: torch.Tensor | None,
        cache: APTCache | None,
    ) -> torch.Tensor:
        bsz, seq, _ = x.shape
        inner = self.n_heads * self.head_dim
        # qkv keeps its own matmul: fusing the autopoietic down-projection into it measured no faster
        # on an H200 (bench/results/gpu_train*.json) and only made q/k/v slices of a wider tensor.
        q, k, v = self.qkv(x).view(bsz, seq, 3, self.n_heads, self.head_dim).unbind(dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, hd]
        if rope is not None:
            cos, sin = rope
            q, k = _apply_rope(q, cos, sin), _apply_rope(k, cos, sin)
        past = 0
        if cache is not None:
            cached = cache.keys[self.layer_idx]
            past = 0 if cached is None else cached.shape[2]
            k, v = cache.update_kv(self.layer_idx, k, v)
        dropout_p = self.dropout if self.training else 0.0
        if attn_mask is None:
            # No padding: the fast causal kernel; a single new token with a cache may see everything.
            o = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=(past == 0 and seq > 1))
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        o = o.transpose(1, 2)  # [B, T, H, hd]
        if self.autopoietic:
            # gate = sigmoid(W_g · mean(x_<=t) + b) = sigmoid(mean(W_g · x + b)_<=t): the mean commutes with
            # the affine map, so the running mean is taken over the H gate inputs instead of the d_model
            # inputs. Same function, a d_model/H times smaller prefix scan.
            down, gate_in = self._ap_projections(x)
            gate = torch.sigmoid(self._prefix_mean(gate_in, token_mask, cache))  # [B, T, H]
            low_rank = self.ap_up(down).view(bsz, seq, self.n_heads, self.head_dim)
            o = o + (self.alpha * torch.tanh(self.ap_tau)) * gate.unsqueeze(-1) * low_rank
        return self.out(o.reshape(bsz, seq, inner))

    def _ap_projections(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ap_down(x), ap_gate(x))``; when gradients are needed, one matmul over the stacked weights.

        The gate alone is a 12-wide matmul whose forward and backward GEMMs ran at a fraction of the
        card's speed; stacked under the rank-r down-projection (zero rows pad the output to a multiple
        of 8, so bf16 rows stay 16-byte aligned) the model trains ~2 % faster on an H200 (README,
        Performance). The gate bias rides in the GEMM's bias: adding it afterwards to the slice that
        feeds the prefix scan hits a torch.compile (inductor) codegen error. Without gradients (eval,
        generation) the backward saving is gone and stacking the weights on every call made CPU decoding
        1-5 % slower, so the modules are called. They are also called when a hook observes either, so
        observers (the prune plugin's calibration, torch-pruning's tracer) see their inputs and outputs."""
        down, gate = self.ap_down, self.ap_gate
        hooked = down._forward_hooks or down._forward_pre_hooks or gate._forward_hooks or gate._forward_pre_hooks
        if hooked or not torch.is_grad_enabled():
            return down(x), gate(x)
        rank, heads = down.out_features, gate.out_features
        pad = -(rank + heads) % 8
        weight = torch.cat([down.weight, gate.weight, down.weight.new_zeros(pad, down.in_features)])
        bias = torch.cat([gate.bias.new_zeros(rank), gate.bias, gate.bias.new_zeros(pad)])
        projected, gate_in, _ = F.linear(x, weight, bias).split([rank, heads, pad], dim=-1)
        return projected, gate_in

    def _prefix_mean(self, x: torch.Tensor, token_mask: torch.Tensor | None, cache: APTCache | None) -> torch.Tensor:
        """Mean of x over positions <= t (padding excluded), continuing the cache's running sum.

        Computed in fp32: bf16 loses precision over long prefixes."""
        xf = x.float()
        if token_mask is None:
            ones = torch.ones(x.shape[0], x.shape[1], 1, device=x.device, dtype=torch.float32)
        else:
            ones = token_mask[:, -x.shape[1]:, None].to(torch.float32)
            xf = xf * ones
        csum = xf.cumsum(dim=1)
        count = ones.cumsum(dim=1)
        if cache is not None:
            if cache.x_sum[self.layer_idx] is not None:
                csum = csum + cache.x_sum[self.layer_idx]
                count = count + cache.count[self.layer_idx]
            cache.x_sum[self.layer_idx] = csum[:, -1:, :]
            cache.count[self.layer_idx] = count[:, -1:, :]
        return (csum / count.clamp(min=1.0)).to(x.dtype)


class APTFeedForward(nn.Module):
    """Gated FFN ``(x W1 * act(x W2)) W3``."""

    def __init__(self, config: APTConfig, d_ff: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(config.d_model, d_ff, bias=False)
        self.w2 = nn.Linear(config.d_model, d_ff, bias=False)
        self.w3 = nn.Linear(d_ff, config.d_model, bias=False)
        self.act = _ACTIVATIONS[config.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.w1(x) * self.act(self.w2(x)))


class APTBlock(nn.Module):
    """Attention and FFN sub-layers, each joined to the stream by a (left-spin) residual."""

    def __init__(self, config: APTConfig, n_heads: int, d_ff: int, layer_idx: int) -> None:
        super().__init__()
        self.pre_norm = config.norm_placement == "pre"
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attn = APTAttention(config, n_heads, layer_idx)
        self.ffn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.ffn = APTFeedForward(config, d_ff)
        self.drop = nn.Dropout(config.dropout)
        self.left_spin = config.left_spin
        self.spin_a, self.spin_t0, self.spin_eps = config.left_spin_a, config.left_spin_t0, config.left_spin_eps

    def residual(self, u: torch.Tensor, du: torch.Tensor) -> torch.Tensor:
        """Left-spin residual: a per-token damping of updates that are large relative to the stream."""
        if not self.left_spin:
            return u + du
        ratio = torch.linalg.vector_norm(du, dim=-1, keepdim=True, dtype=torch.float32) / (
            self.spin_eps + torch.linalg.vector_norm(u, dim=-1, keepdim=True, dtype=torch.float32)
        )
        phi = self.spin_a * F.softplus(ratio - self.spin_t0)
        return u + du * torch.rsqrt(1.0 + phi * phi).to(du.dtype)

    def forward(self, u, rope, attn_mask, token_mask, cache):
        if self.pre_norm:
            u = self.residual(u, self.drop(self.attn(self.attn_norm(u), rope, attn_mask, token_mask, cache)))
            return self.residual(u, self.drop(self.ffn(self.ffn_norm(u))))
        u = self.attn_norm(self.residual(u, self.drop(self.attn(u, rope, attn_mask, token_mask, cache))))
        return self.ffn_norm(self.residual(u, self.drop(self.ffn(u))))


class APTModel(nn.Module):
    """Decoder-only Autopoietic Transformer. ``model(input_ids, labels=...)`` -> :class:`APTOutput`."""

    def __init__(self, config: APTConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(
            APTBlock(config, h, ff, i)
            for i, (h, ff) in enumerate(zip(config.heads_per_layer(), config.d_ff_per_layer()))
        )
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.lm_head = None if config.tie_embeddings else nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.drop = nn.Dropout(config.dropout)
        if config.position_encoding == "rope":
            cos, sin = _rope_tables(config.max_seq_len, config.resolved_head_dim, config.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        else:
            self.register_buffer("pos_table", _sinusoidal_table(config.max_seq_len, config.d_model), persistent=False)
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    def reset_parameters(self) -> None:
        """GPT-2 style init: N(0, init_std), residual output projections scaled by 1/sqrt(2 * n_layers)."""
        std = self.config.init_std
        out_std = std / math.sqrt(2 * self.config.n_layers)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                is_out = name.endswith("attn.out") or name.endswith("ffn.w3")
                nn.init.normal_(module.weight, mean=0.0, std=out_std if is_out else std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        for layer in self.layers:
            if layer.attn.autopoietic:
                with torch.no_grad():
                    layer.attn.ap_tau.fill_(float(self.config.autopoietic_tau_init))

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        past_key_values: APTCache | None = None,
        use_cache: bool = False,
        return_logits: bool = True,
    ) -> APTOutput:
        """Logits for every position; ``loss`` is next-token cross-entropy (labels shifted inside, -100 ignored).

        ``attention_mask`` ([B, T] or [B, past+T], 1 = real token) masks padding keys and excludes
        padding from the gate's prefix mean. ``use_cache`` returns an :class:`APTCache` for decoding.
        ``return_logits=False`` (with ``labels``) returns the loss alone, for a training step that needs
        nothing else: logits that leave a compiled model need a gradient in its backward, and autograd
        fills a zero one of batch x seq x vocab for them when the loss is all that was used (1.4 % of the
        tokens/s and 1.9 GiB of peak memory at 110 M parameters on an H200, README, Performance).
        """
        bsz, seq = input_ids.shape
        cache = past_key_values if past_key_values is not None else (APTCache(len(self.layers)) if use_cache else None)
        past = cache.seq_len if cache is not None else 0
        if past + seq > self.config.max_seq_len:
            raise APTError(f"sequence length {past + seq} exceeds max_seq_len {self.config.max_seq_len}")
        h = self.embed(input_ids)
        rope = None
        if self.config.position_encoding == "rope":
            rope = (self.rope_cos[past : past + seq].to(h.dtype), self.rope_sin[past : past + seq].to(h.dtype))
        else:
            h = h + self.pos_table[past : past + seq].to(h.dtype)
        h = self.drop(h)
        attn_mask = self._attention_mask(attention_mask, bsz, seq, past, h.device) if attention_mask is not None else None
        if attn_mask is None and cache is not None and past > 0 and seq > 1:
            attn_mask = self._attention_mask(None, bsz, seq, past, h.device)
        hidden: list[torch.Tensor] = [h] if output_hidden_states else []
        for layer in self.layers:
            h = layer(h, rope, attn_mask, attention_mask, cache)
            if output_hidden_states:
                hidden.append(h)
        h = self.norm(h)
        weight = self.embed.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(h, weight)
        loss = None
        if labels is not None:
            # Shift the labels (padding the last position with -100) rather than slicing the logits,
            # which would copy the largest tensor of the step.
            targets = F.pad(labels[:, 1:], (0, 1), value=-100)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100)
        if loss is not None and not return_logits:
            logits = None
        return APTOutput(logits=logits, loss=loss, hidden_states=tuple(hidden) if output_hidden_states else None,
                         past_key_values=cache)

    @staticmethod
    def _attention_mask(mask: torch.Tensor | None, bsz: int, seq: int, past: int, device) -> torch.Tensor:
        """Boolean [B, 1, T, past+T] mask: causal, padding keys removed, the diagonal always kept
        (so a padding query never has an empty row, which would give NaN)."""
        total = past + seq
        q_pos = torch.arange(past, total, device=device)[:, None]
        k_pos = torch.arange(total, device=device)[None, :]
        allowed = (k_pos <= q_pos)[None, None]  # [1, 1, T, S]
        if mask is not None:
            keys = mask[:, -total:].to(torch.bool) if mask.shape[1] >= total else torch.cat(
                [torch.ones(bsz, total - mask.shape[1], dtype=torch.bool, device=device), mask.to(torch.bool)], dim=1)
            allowed = allowed & keys[:, None, None, :]
            allowed = allowed | (k_pos == q_pos)[None, None]
        return allowed.expand(bsz, 1, seq, total)

    # ------------------------------------------------------------------ helpers
    def num_parameters(self) -> int:
        """Number of parameters (the tied embedding counted once)."""
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int = 50, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, repetition_penalty: float = 1.0,
                 eos_token_id: int | None = None, **kwargs: Any) -> torch.Tensor:
        """Continue ``input_ids`` ([B, T] or [T]); see :func:`apt_core.model.generation.generate`."""
        from apt_core.model.generation import generate

        return generate(self, input_ids, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                        top_p=top_p, repetition_penalty=repetition_penalty, eos_token_id=eos_token_id, **kwargs)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into *directory* (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.to_json_file(directory / "config.json")
        write_safetensors(self.state_dict(), directory / "model.safetensors")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None) -> APTModel:
        """Load a model saved by :meth:`save_pretrained` (or a checkpoint directory)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise APTError(f"not a model directory: {directory}")
        config = APTConfig.from_json_file(directory / "config.json")
        state = read_safetensors(directory / "model.safetensors", device=map_location)
        model = cls(config)
        model.load_weights(state, source=directory / "model.safetensors")
        if dtype is not None:
            model.to(dtype=dtype)
        return model.to(map_location)

    def load_weights(self, state: dict[str, torch.Tensor], source: str | Path = "state dict") -> None:
        """Load a state dict, turning missing/unexpected/mis-shaped tensors into one APTError line."""
        self.check_weights(state, source)
        self.load_state_dict(state, strict=True)

    def check_weights(self, state: dict[str, torch.Tensor], source: str | Path = "state dict") -> None:
        """Raise one APTError line if *state* has missing, unexpected or mis-shaped tensors for this model.

        Shapes are compared with ``self.state_dict()``, whose shapes are the full ones also when the
        parameters are FSDP shards (DTensors report their global shape)."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
            if unexpected:
                parts.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
            raise APTError(f"weights in {source} do not match config.json: {'; '.join(parts)}")
        for name, tensor in state.items():
            if tuple(tensor.shape) != tuple(own[name].shape):
                raise APTError(f"weights in {source} do not match config.json: {name} has shape "
                               f"{tuple(tensor.shape)}, config expects {tuple(own[name].shape)}")
