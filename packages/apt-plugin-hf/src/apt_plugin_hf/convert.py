"""Pure mappings between APT checkpoints and Hugging Face layouts (configs and state dicts).

Two targets:

* ``apt`` (``APTForCausalLM`` remote code): same module names as APT under ``model.``; the LM head
  is ``lm_head`` (tied to ``model.embed`` unless ``tie_embeddings`` is false, in which case APT has its
  own ``lm_head`` too). A pure renaming, so export -> import reproduces every tensor bit for bit.
* ``llama`` (stock ``LlamaForCausalLM``): only when APT's own features are off and the rest is what
  Llama computes (pre-norm RMSNorm, RoPE, gated FFN, no bias, no dropout, equal widths in every layer).
  The fused ``qkv`` splits into ``q_proj/k_proj/v_proj``; FFN ``(x W1 * act(x W2)) W3`` is Llama's
  ``down(act(gate(x)) * up(x))`` with gate = W2, up = W1, down = W3.

Nothing here imports transformers: configs are plain dicts, state dicts map names to tensors.
"""

from __future__ import annotations

from typing import Any

from apt_core.errors import APTError

__all__ = [
    "APT_FIELDS",
    "apt_to_hf_config",
    "hf_to_apt_config",
    "apt_to_hf_state",
    "hf_to_apt_state",
    "llama_incompatibilities",
    "apt_to_llama_config",
    "llama_to_apt_config",
    "apt_to_llama_state",
    "llama_to_apt_state",
]

#: APTConfig fields carried 1:1 into the HF config (``tie_embeddings`` becomes ``tie_word_embeddings``).
APT_FIELDS = (
    "vocab_size", "d_model", "n_layers", "n_heads", "head_dim", "d_ff", "max_seq_len", "dropout", "norm_eps",
    "norm_placement", "position_encoding", "rope_theta", "activation", "init_std", "autopoietic",
    "autopoietic_alpha", "autopoietic_tau_init", "sr_ratio", "left_spin", "left_spin_a", "left_spin_t0",
    "left_spin_eps", "pad_token_id", "unk_token_id", "bos_token_id", "eos_token_id",
)


# ---------------------------------------------------------------------------------------- APT <-> HF APT
def apt_to_hf_config(config) -> dict[str, Any]:
    """Keyword arguments of the remote ``APTConfig`` for an ``apt_core`` APTConfig."""
    data = config.to_dict()
    out = {name: data[name] for name in APT_FIELDS}
    out["tie_word_embeddings"] = bool(data["tie_embeddings"])
    if data.get("extra"):
        out["apt_extra"] = data["extra"]
    return out


def hf_to_apt_config(data: dict[str, Any]):
    """An ``apt_core`` APTConfig from an exported ``config.json`` (``model_type "apt"``)."""
    from apt_core.model import APTConfig

    if data.get("model_type") != "apt":
        raise APTError(f"not an APT export: config.json has model_type {data.get('model_type')!r}")
    missing = [name for name in ("vocab_size", "d_model", "n_layers") if name not in data]
    if missing:
        raise APTError(f"invalid APT export: config.json lacks {', '.join(missing)}")
    fields = {name: data[name] for name in APT_FIELDS if name in data}
    fields["tie_embeddings"] = bool(data.get("tie_word_embeddings", True))
    if isinstance(data.get("apt_extra"), dict):
        fields["extra"] = data["apt_extra"]
    return APTConfig.from_dict(fields)


def apt_to_hf_state(state: dict, tie_embeddings: bool) -> dict:
    """APT tensor names -> ``APTForCausalLM`` names (the tied LM head is not stored, as transformers does)."""
    out = {}
    for name, tensor in state.items():
        if name == "lm_head.weight":
            if not tie_embeddings:
                out[name] = tensor
        else:
            out[f"model.{name}"] = tensor
    return out


def hf_to_apt_state(state: dict, tie_embeddings: bool) -> dict:
    """Inverse of :func:`apt_to_hf_state`."""
    out = {}
    for name, tensor in state.items():
        if name == "lm_head.weight":
            if not tie_embeddings:
                out[name] = tensor
        elif name.startswith("model."):
            out[name[len("model."):]] = tensor
        else:
            raise APTError(f"unexpected tensor {name!r} in an APT export")
    return out


# ---------------------------------------------------------------------------------------- Llama
def llama_incompatibilities(config) -> list[str]:
    """Why *config* cannot be exported as a plain LlamaForCausalLM (empty list = it can)."""
    reasons = []
    if config.autopoietic:
        reasons.append("autopoietic attention is on")
    if config.left_spin:
        reasons.append("left-spin residuals are on")
    if config.norm_placement != "pre":
        reasons.append("norm_placement is not 'pre'")
    if config.position_encoding != "rope":
        reasons.append("position_encoding is not 'rope'")
    if config.dropout:
        reasons.append("dropout is not 0")
    if len(set(config.heads_per_layer())) > 1:
        reasons.append("head counts differ between layers")
    if len(set(config.d_ff_per_layer())) > 1:
        reasons.append("FFN widths differ between layers")
    return reasons


def apt_to_llama_config(config) -> dict[str, Any]:
    """``LlamaConfig`` keyword arguments computing exactly what the APT *config* computes."""
    reasons = llama_incompatibilities(config)
    if reasons:
        raise APTError(f"cannot export as llama: {'; '.join(reasons)} (export as apt instead)")
    heads = config.heads_per_layer()[0]
    return {
        "vocab_size": config.vocab_size, "hidden_size": config.d_model, "intermediate_size": config.d_ff_per_layer()[0],
        "num_hidden_layers": config.n_layers, "num_attention_heads": heads, "num_key_value_heads": heads,
        "head_dim": config.resolved_head_dim, "hidden_act": config.activation,
        "max_position_embeddings": config.max_seq_len, "initializer_range": config.init_std,
        "rms_norm_eps": config.norm_eps, "tie_word_embeddings": config.tie_embeddings,
        "rope_parameters": {"rope_type": "default", "rope_theta": float(config.rope_theta)},
        "attention_bias": False, "mlp_bias": False, "attention_dropout": 0.0,
        "pad_token_id": config.pad_token_id, "bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id,
    }


def llama_to_apt_config(data: dict[str, Any]):
    """An APT config (APT features off) equal to a Llama ``config.json``; APTError when it has no APT equivalent."""
    from apt_core.model import APTConfig

    heads = data["num_attention_heads"]
    if data.get("num_key_value_heads", heads) not in (None, heads):
        raise APTError("cannot import this Llama model: grouped-query attention (num_key_value_heads) has no APT equivalent")
    if data.get("attention_bias") or data.get("mlp_bias"):
        raise APTError("cannot import this Llama model: biases have no APT equivalent")
    rope = data.get("rope_parameters") or data.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise APTError(f"cannot import this Llama model: rope type {rope.get('rope_type')!r} has no APT equivalent")
    theta = rope.get("rope_theta", data.get("rope_theta", 10000.0))
    return APTConfig(
        vocab_size=data["vocab_size"], d_model=data["hidden_size"], n_layers=data["num_hidden_layers"], n_heads=heads,
        head_dim=data.get("head_dim") or data["hidden_size"] // heads, d_ff=data["intermediate_size"],
        max_seq_len=data.get("max_position_embeddings", 2048), norm_eps=data.get("rms_norm_eps", 1e-6),
        norm_placement="pre", position_encoding="rope", rope_theta=float(theta),
        activation=data.get("hidden_act", "silu"), tie_embeddings=bool(data.get("tie_word_embeddings", False)),
        init_std=data.get("initializer_range", 0.02), autopoietic=False, left_spin=False, dropout=0.0,
        pad_token_id=data.get("pad_token_id") or 0, bos_token_id=data.get("bos_token_id", 2),
        eos_token_id=data.get("eos_token_id", 3),
    )


def apt_to_llama_state(state: dict, config) -> dict:
    """APT tensors -> LlamaForCausalLM tensors (config must pass :func:`llama_incompatibilities`)."""
    inner = config.heads_per_layer()[0] * config.resolved_head_dim
    out = {"model.embed_tokens.weight": state["embed.weight"], "model.norm.weight": state["norm.weight"]}
    if not config.tie_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    for i in range(config.n_layers):
        src, dst = f"layers.{i}.", f"model.layers.{i}."
        qkv = state[src + "attn.qkv.weight"]
        out[dst + "self_attn.q_proj.weight"] = qkv[:inner].clone()
        out[dst + "self_attn.k_proj.weight"] = qkv[inner : 2 * inner].clone()
        out[dst + "self_attn.v_proj.weight"] = qkv[2 * inner :].clone()
        out[dst + "self_attn.o_proj.weight"] = state[src + "attn.out.weight"]
        out[dst + "mlp.up_proj.weight"] = state[src + "ffn.w1.weight"]
        out[dst + "mlp.gate_proj.weight"] = state[src + "ffn.w2.weight"]
        out[dst + "mlp.down_proj.weight"] = state[src + "ffn.w3.weight"]
        out[dst + "input_layernorm.weight"] = state[src + "attn_norm.weight"]
        out[dst + "post_attention_layernorm.weight"] = state[src + "ffn_norm.weight"]
    return out


def llama_to_apt_state(state: dict, config) -> dict:
    """Inverse of :func:`apt_to_llama_state`."""
    import torch

    out = {"embed.weight": state["model.embed_tokens.weight"], "norm.weight": state["model.norm.weight"]}
    if not config.tie_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    for i in range(config.n_layers):
        src, dst = f"model.layers.{i}.", f"layers.{i}."
        out[dst + "attn.qkv.weight"] = torch.cat(
            [state[src + f"self_attn.{p}_proj.weight"] for p in ("q", "k", "v")], dim=0)
        out[dst + "attn.out.weight"] = state[src + "self_attn.o_proj.weight"]
        out[dst + "ffn.w1.weight"] = state[src + "mlp.up_proj.weight"]
        out[dst + "ffn.w2.weight"] = state[src + "mlp.gate_proj.weight"]
        out[dst + "ffn.w3.weight"] = state[src + "mlp.down_proj.weight"]
        out[dst + "attn_norm.weight"] = state[src + "input_layernorm.weight"]
        out[dst + "ffn_norm.weight"] = state[src + "post_attention_layernorm.weight"]
    return out
