"""Hugging Face implementation of APT (Autopoietic Transformer), a decoder-only causal language model.

Self-contained (imports only torch and transformers) so that it runs as ``trust_remote_code`` next to
an exported model, with exactly the maths of the APT reference implementation:

* token embedding + sinusoidal positions (or RoPE on q/k), N blocks, final RMSNorm, LM head
  (tied to the embedding unless ``tie_word_embeddings`` is false);
* causal attention through ``scaled_dot_product_attention`` with a fused ``qkv`` projection, plus the
  autopoietic term added per head before the output projection:
  ``o' = o + alpha * tanh(tau) * g * ((x U) V)``, where the per-head gate ``g`` is the sigmoid of a
  linear map of the *running prefix mean* of x (position t sees only positions <= t);
* left-spin residuals ``u' = u + du / sqrt(1 + phi^2)``, ``phi = a * softplus(|du| / (eps + |u|) - t0)``,
  per token and stateless;
* gated FFN ``(x W1 * act(x W2)) W3``; per-layer head counts and FFN widths.

Positions are absolute indices (0 for the first token of the sequence, continuing through the cache),
as in APT; ``position_ids`` is accepted for API compatibility and ignored. ``hidden_states`` are the
embeddings and every block's output before the final norm, as APT returns them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import DynamicCache
from transformers.utils import ModelOutput

try:  # transformers >= 5: init functions that respect already-loaded weights
    from transformers import initialization as _init
except ImportError:  # pragma: no cover
    _init = nn.init

from .configuration_apt import APTConfig

__all__ = ["APTForCausalLM", "APTModel", "APTPreTrainedModel", "APTCausalLMOutput", "APTCache"]

_ACTIVATIONS = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu}


# transformers renamed the cache field of model outputs from ``past_key_values`` to ``cache`` during 5.x
# (keeping ``past_key_values`` as a read-only alias); declare whichever this version expects.
_CACHE_FIELD = "cache" if isinstance(getattr(ModelOutput, "past_key_values", None), property) else "past_key_values"

if _CACHE_FIELD == "cache":

    @dataclass
    class APTCausalLMOutput(ModelOutput):
        """Output of :class:`APTForCausalLM`."""

        loss: torch.Tensor | None = None
        logits: torch.Tensor | None = None
        cache: APTCache | None = None
        hidden_states: tuple[torch.Tensor, ...] | None = None

else:  # pragma: no cover - transformers releases before the rename

    @dataclass
    class APTCausalLMOutput(ModelOutput):
        """Output of :class:`APTForCausalLM`."""

        loss: torch.Tensor | None = None
        logits: torch.Tensor | None = None
        past_key_values: APTCache | None = None
        hidden_states: tuple[torch.Tensor, ...] | None = None


class APTCache(DynamicCache):
    """Key/value cache plus, per layer, the running sum and count of the gate input x.

    The autopoietic gate at position t uses the prefix mean of x over <= t, which the keys and values
    alone cannot reproduce, so it travels with the cache (and is reordered with it in beam search).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.apt_x_sum: dict[int, torch.Tensor] = {}
        self.apt_count: dict[int, torch.Tensor] = {}

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        for store in (self.apt_x_sum, self.apt_count):
            for layer, tensor in store.items():
                store[layer] = tensor.index_select(0, beam_idx.to(tensor.device))


def _gate_state(cache) -> tuple[dict, dict]:
    """The gate's running state of any cache object (a plain DynamicCache gets it attached)."""
    if not hasattr(cache, "apt_x_sum"):
        cache.apt_x_sum, cache.apt_count = {}, {}
    return cache.apt_x_sum, cache.apt_count


class APTRMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned gain."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """The original Transformer's sinusoidal position table [length, dim] (float32)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)[:, : dim // 2]
    return table


def rope_tables(length: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [length, head_dim] of rotary embeddings (halves repeated)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate q or k ([B, H, T, hd]); ``roll`` with a sign vector equals rotate_half."""
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

    def forward(self, x, rope, attn_mask, token_mask, cache):
        bsz, seq, _ = x.shape
        q, k, v = self.qkv(x).view(bsz, seq, 3, self.n_heads, self.head_dim).unbind(dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, hd]
        if rope is not None:
            cos, sin = rope
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        past = 0
        if cache is not None:
            past = cache.get_seq_length(self.layer_idx)
            k, v = cache.update(k, v, self.layer_idx)
        dropout_p = self.dropout if self.training else 0.0
        if attn_mask is None:
            o = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=(past == 0 and seq > 1))
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        o = o.transpose(1, 2)  # [B, T, H, hd]
        if self.autopoietic:
            gate = torch.sigmoid(self.ap_gate(self._prefix_mean(x, token_mask, cache)))  # [B, T, H]
            low_rank = self.ap_up(self.ap_down(x)).view(bsz, seq, self.n_heads, self.head_dim)
            o = o + (self.alpha * torch.tanh(self.ap_tau)) * gate.unsqueeze(-1) * low_rank
        return self.out(o.reshape(bsz, seq, self.n_heads * self.head_dim))

    def _prefix_mean(self, x, token_mask, cache):
        """Mean of x over positions <= t (padding excluded), continuing the cache's running sum."""
        xf = x.float()  # cumsum in fp32: bf16 loses precision over long prefixes
        if token_mask is None:
            ones = torch.ones(x.shape[0], x.shape[1], 1, device=x.device, dtype=torch.float32)
        else:
            ones = token_mask[:, -x.shape[1]:, None].to(torch.float32)
            xf = xf * ones
        csum = xf.cumsum(dim=1)
        count = ones.cumsum(dim=1)
        if cache is not None:
            sums, counts = _gate_state(cache)
            if self.layer_idx in sums:
                csum = csum + sums[self.layer_idx]
                count = count + counts[self.layer_idx]
            sums[self.layer_idx] = csum[:, -1:, :]
            counts[self.layer_idx] = count[:, -1:, :]
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
        self.attn_norm = APTRMSNorm(config.d_model, config.norm_eps)
        self.attn = APTAttention(config, n_heads, layer_idx)
        self.ffn_norm = APTRMSNorm(config.d_model, config.norm_eps)
        self.ffn = APTFeedForward(config, d_ff)
        self.drop = nn.Dropout(config.dropout)
        self.left_spin = config.left_spin
        self.spin_a, self.spin_t0, self.spin_eps = config.left_spin_a, config.left_spin_t0, config.left_spin_eps

    def residual(self, u: torch.Tensor, du: torch.Tensor) -> torch.Tensor:
        """Left-spin residual: per-token damping of updates that are large relative to the stream."""
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


class APTPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading glue shared by the APT model classes."""

    config_class = APTConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules = ["APTBlock"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # APT's init: N(0, init_std), residual output projections scaled by 1/sqrt(2 * n_layers).
        std = self.config.init_std
        out_std = std / math.sqrt(2 * self.config.n_layers)
        if isinstance(module, APTAttention):
            _init.normal_(module.qkv.weight, mean=0.0, std=std)
            _init.normal_(module.out.weight, mean=0.0, std=out_std)
            if module.autopoietic:
                _init.constant_(module.ap_tau, float(self.config.autopoietic_tau_init))
        elif isinstance(module, APTFeedForward):
            _init.normal_(module.w1.weight, mean=0.0, std=std)
            _init.normal_(module.w2.weight, mean=0.0, std=std)
            _init.normal_(module.w3.weight, mean=0.0, std=out_std)
        elif isinstance(module, nn.Linear) and not getattr(module.weight, "_is_hf_initialized", False):
            _init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                _init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            _init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, APTRMSNorm):
            _init.ones_(module.weight)


class APTModel(APTPreTrainedModel):
    """The APT decoder stack without the LM head."""

    def __init__(self, config: APTConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(
            APTBlock(config, h, ff, i) for i, (h, ff) in enumerate(zip(config.heads_per_layer(), config.d_ff_per_layer()))
        )
        self.norm = APTRMSNorm(config.d_model, config.norm_eps)
        self.drop = nn.Dropout(config.dropout)
        # Position tables are computed on first use, not registered as buffers: transformers builds
        # models on the meta device and would leave non-persistent buffers uninitialised.
        self._tables: dict = {}
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed = value

    def _table(self, device: torch.device):
        key = str(device)
        if key not in self._tables:
            cfg = self.config
            if cfg.position_encoding == "rope":
                cos, sin = rope_tables(cfg.max_seq_len, cfg.resolved_head_dim, cfg.rope_theta)
                self._tables[key] = (cos.to(device), sin.to(device))
            else:
                self._tables[key] = sinusoidal_table(cfg.max_seq_len, cfg.d_model).to(device)
        return self._tables[key]

    def forward(self, input_ids=None, attention_mask=None, cache=None, inputs_embeds=None, output_hidden_states=False):
        """Hidden states after the final norm, the per-block states (if asked) and the cache."""
        h = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        bsz, seq = h.shape[:2]
        past = cache.get_seq_length() if cache is not None else 0
        if past + seq > self.config.max_seq_len:
            raise ValueError(f"sequence length {past + seq} exceeds max_seq_len {self.config.max_seq_len}")
        rope = None
        if self.config.position_encoding == "rope":
            cos, sin = self._table(h.device)
            rope = (cos[past : past + seq].to(h.dtype), sin[past : past + seq].to(h.dtype))
        else:
            h = h + self._table(h.device)[past : past + seq].to(h.dtype)
        h = self.drop(h)
        if attention_mask is not None and not _compiling() and bool(attention_mask.all()):
            attention_mask = None  # no padding: take the fused causal kernel, exactly as APT does
        attn_mask = _attention_mask(attention_mask, bsz, seq, past, h.device) if attention_mask is not None else None
        if attn_mask is None and cache is not None and past > 0 and seq > 1:
            attn_mask = _attention_mask(None, bsz, seq, past, h.device)
        hidden = [h] if output_hidden_states else []
        for layer in self.layers:
            h = layer(h, rope, attn_mask, attention_mask, cache)
            if output_hidden_states:
                hidden.append(h)
        return self.norm(h), (tuple(hidden) if output_hidden_states else None)


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


def _attention_mask(mask, bsz: int, seq: int, past: int, device) -> torch.Tensor:
    """Boolean [B, 1, T, past+T] mask: causal, padding keys removed, the diagonal always kept."""
    total = past + seq
    q_pos = torch.arange(past, total, device=device)[:, None]
    k_pos = torch.arange(total, device=device)[None, :]
    allowed = (k_pos <= q_pos)[None, None]
    if mask is not None:
        keys = mask[:, -total:].to(torch.bool) if mask.shape[1] >= total else torch.cat(
            [torch.ones(bsz, total - mask.shape[1], dtype=torch.bool, device=device), mask.to(torch.bool)], dim=1)
        allowed = allowed & keys[:, None, None, :]
        allowed = allowed | (k_pos == q_pos)[None, None]
    return allowed.expand(bsz, 1, seq, total)


class APTForCausalLM(APTPreTrainedModel, GenerationMixin):
    """APT with its language-model head: ``model(input_ids, labels=...)`` -> logits and next-token loss."""

    _tied_weights_keys = {"lm_head.weight": "model.embed.weight"}

    def __init__(self, config: APTConfig) -> None:
        super().__init__(config)
        self.model = APTModel(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # generate() must not hand us a plain DynamicCache: the model creates an APTCache itself.
        return False

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: APTCache | None = None,
        past_key_values: APTCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> APTCausalLMOutput:
        """Logits for every position; ``loss`` is next-token cross-entropy (labels shifted inside, -100 ignored).

        ``cache`` (or its older name ``past_key_values``) continues a sequence; ``use_cache`` starts one.
        """
        cache = cache if cache is not None else past_key_values
        if cache is None and use_cache:
            cache = APTCache()
        h, hidden = self.model(input_ids, attention_mask, cache, inputs_embeds, bool(output_hidden_states))
        if logits_to_keep:
            h = h[:, -logits_to_keep:, :]
        logits = self.lm_head(h)
        loss = None
        if labels is not None:
            flat_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
            flat_labels = labels[:, 1:].reshape(-1).to(logits.device)
            num_items = kwargs.get("num_items_in_batch")
            if num_items is None:
                loss = F.cross_entropy(flat_logits, flat_labels, ignore_index=-100)
            else:  # transformers.Trainer normalises over the whole accumulated batch itself
                loss = F.cross_entropy(flat_logits, flat_labels, ignore_index=-100, reduction="sum") / num_items
        return APTCausalLMOutput(loss=loss, logits=logits, hidden_states=hidden,
                                 **{_CACHE_FIELD: cache if use_cache else None})

    def prepare_inputs_for_generation(self, input_ids, cache=None, past_key_values=None, attention_mask=None,
                                      inputs_embeds=None, use_cache=True, **kwargs):
        """Feed only the tokens the cache has not seen yet."""
        cache = cache if cache is not None else past_key_values
        past = cache.get_seq_length() if cache is not None else 0
        inputs = {"attention_mask": attention_mask, "cache": cache, "use_cache": use_cache}
        if inputs_embeds is not None and past == 0:
            inputs["inputs_embeds"] = inputs_embeds
        else:
            inputs["input_ids"] = input_ids[:, past:] if past else input_ids
        if "logits_to_keep" in kwargs:
            inputs["logits_to_keep"] = kwargs["logits_to_keep"]
        return inputs
