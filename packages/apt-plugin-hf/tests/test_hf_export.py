"""Export to the Hugging Face format: stock transformers reproduces APT exactly; import reverses it."""

from __future__ import annotations

import ast
import json

import pytest

TEXT = "ROMEO: But soft, what light through yonder window breaks? «é» 中文\n\tend "


def _apt(checkpoint):
    from apt_core.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    return loaded.model.eval(), loaded.tokenizer


def _hf(folder, **kwargs):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), **kwargs).eval()


def _compare(checkpoint, folder, *, remote_code=True, new_tokens=12):
    """Max |logit difference| on a batch, and whether greedy continuations agree token for token."""
    import torch

    apt, tok = _apt(checkpoint)
    hf = _hf(folder, trust_remote_code=remote_code)
    torch.manual_seed(1)
    ids = torch.randint(4, apt.config.vocab_size, (3, 40))
    with torch.no_grad():
        diff = float((apt(ids).logits - hf(ids).logits).abs().max())
        prompt = torch.tensor([tok.encode(TEXT)[:10]])
        apt_gen = apt.generate(prompt, max_new_tokens=new_tokens, temperature=0)
        hf_gen = hf.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    return diff, apt_gen.tolist(), hf_gen.tolist()


def test_export_layout_and_config(exported):
    names = {p.name for p in exported.iterdir()}
    assert {"config.json", "configuration_apt.py", "modeling_apt.py", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "generation_config.json", "README.md", ".gitattributes"} <= names
    config = json.loads((exported / "config.json").read_text())
    assert config["model_type"] == "apt"
    assert config["auto_map"] == {"AutoConfig": "configuration_apt.APTConfig",
                                  "AutoModelForCausalLM": "modeling_apt.APTForCausalLM"}
    assert config["architectures"] == ["APTForCausalLM"]
    generation = json.loads((exported / "generation_config.json").read_text())
    assert (generation["bos_token_id"], generation["eos_token_id"], generation["pad_token_id"]) == (2, 3, 0)
    assert not list(exported.parent.glob(".apt-tiny.tmp-*")), "the staging directory was left behind"


def test_remote_code_imports_only_torch_and_transformers(exported):
    for name in ("configuration_apt.py", "modeling_apt.py"):
        tree = ast.parse((exported / name).read_text())
        roots = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots.add(node.module.split(".")[0])
        assert roots <= {"torch", "transformers", "math", "dataclasses", "__future__"}, (name, roots)


def test_auto_model_reproduces_apt_logits_and_greedy_generation(apt_checkpoint, exported):
    diff, apt_gen, hf_gen = _compare(apt_checkpoint, exported)
    assert diff < 1e-5
    assert apt_gen == hf_gen


def test_padding_mask_and_cache_match_apt(apt_checkpoint, exported):
    import torch

    apt, _ = _apt(apt_checkpoint)
    hf = _hf(exported, trust_remote_code=True)
    ids = torch.randint(4, apt.config.vocab_size, (2, 20))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # left padding in the second row
    with torch.no_grad():
        assert float((apt(ids, attention_mask=mask).logits - hf(ids, attention_mask=mask).logits).abs().max()) < 1e-5
        # Incremental decoding through the HF cache equals one full forward pass.
        first = hf(ids[:, :12], use_cache=True)
        cache = first.get("cache") or first.get("past_key_values")  # the field was renamed during transformers 5.x
        rest = hf(ids[:, 12:], cache=cache, use_cache=True)
        full = hf(ids).logits
        assert float((rest.logits - full[:, 12:]).abs().max()) < 1e-5


def test_auto_tokenizer_round_trips_text(apt_checkpoint, exported):
    from transformers import AutoTokenizer

    _, tok = _apt(apt_checkpoint)
    # trust_remote_code: AutoTokenizer reads config.json through AutoConfig, which would ask first.
    hf_tok = AutoTokenizer.from_pretrained(str(exported), trust_remote_code=True)
    for text in (TEXT, " leading space", "x", "<eos> literal specials <pad>", ""):
        ids = hf_tok.encode(text, add_special_tokens=False)
        assert ids == tok.encode(text)
        assert hf_tok.decode(ids) == text
    assert hf_tok(TEXT)["input_ids"] == tok.encode(TEXT)  # no BOS/EOS added behind the user's back
    assert (hf_tok.pad_token_id, hf_tok.unk_token_id, hf_tok.bos_token_id, hf_tok.eos_token_id) == (0, 1, 2, 3)


@pytest.mark.parametrize("variant", [
    dict(position_encoding="rope", norm_placement="post", tie_embeddings=False),
    dict(n_heads=[2, 1], d_ff=[48, 24], head_dim=16, activation="gelu", autopoietic=False),
])
def test_feature_variants_match(make_checkpoint, tmp_path, variant):
    from apt_plugin_hf.export import export_checkpoint

    name = "variant-" + "-".join(f"{k}{v}" for k, v in variant.items()).replace(" ", "")
    checkpoint = make_checkpoint(name, tokenizer="byte", **variant)
    folder = export_checkpoint(checkpoint, tmp_path / "out")
    diff, apt_gen, hf_gen = _compare(checkpoint, folder)
    assert diff < 1e-5
    assert apt_gen == hf_gen


def test_sharded_export_loads_the_same(apt_checkpoint, tmp_path):
    from apt_plugin_hf.export import export_checkpoint

    folder = export_checkpoint(apt_checkpoint, tmp_path / "sharded", shard_size="40KB")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and not (folder / "model.safetensors").exists()
    assert all((folder / shard).is_file() for shard in shards)
    diff, apt_gen, hf_gen = _compare(apt_checkpoint, folder)
    assert diff < 1e-5 and apt_gen == hf_gen


@pytest.mark.parametrize("variant", ["apt", "untied", "sharded"])
def test_export_import_round_trip_is_bit_exact(apt_checkpoint, make_checkpoint, tmp_path, variant):
    import torch

    from apt_core.checkpoint import load_checkpoint
    from apt_plugin_hf.export import export_checkpoint
    from apt_plugin_hf.importer import import_model

    source = make_checkpoint("untied", tie_embeddings=False) if variant == "untied" else apt_checkpoint
    folder = export_checkpoint(source, tmp_path / "export", shard_size="40KB" if variant == "sharded" else "2GB")
    back = import_model(str(folder), tmp_path / "back")
    original, restored = load_checkpoint(source), load_checkpoint(back)
    assert original.config.to_dict() == restored.config.to_dict()
    a, b = original.model.state_dict(), restored.model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name
    assert (source / "tokenizer.json").read_bytes() == (back / "tokenizer.json").read_bytes()


def test_export_as_llama_needs_no_remote_code(make_checkpoint, tmp_path):
    from apt_plugin_hf.export import export_checkpoint
    from apt_plugin_hf.importer import import_model

    checkpoint = make_checkpoint("llama-like", autopoietic=False, left_spin=False, position_encoding="rope",
                                 n_heads=4, head_dim=8)
    folder = export_checkpoint(checkpoint, tmp_path / "llama", as_="llama")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "auto_map" not in config
    assert not list(folder.glob("*.py"))
    model = _hf(folder)  # trust_remote_code defaults to False
    assert type(model).__name__ == "LlamaForCausalLM"
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(folder)).encode(TEXT, add_special_tokens=False) == \
        _apt(checkpoint)[1].encode(TEXT)
    diff, apt_gen, hf_gen = _compare(checkpoint, folder, remote_code=False)
    assert diff < 1e-5 and apt_gen == hf_gen
    # ... and a Llama folder imports back to the same APT tensors.
    import torch

    from apt_core.checkpoint import load_checkpoint

    back = load_checkpoint(import_model(str(folder), tmp_path / "back"))
    original = load_checkpoint(checkpoint)
    for name, tensor in original.model.state_dict().items():
        assert torch.equal(tensor, back.model.state_dict()[name]), name


def test_export_as_llama_refuses_apt_features(apt_checkpoint, tmp_path):
    from apt_core.errors import APTError
    from apt_plugin_hf.export import export_checkpoint

    with pytest.raises(APTError, match="cannot export as llama: autopoietic attention is on; left-spin"):
        export_checkpoint(apt_checkpoint, tmp_path / "nope", as_="llama")
    assert not (tmp_path / "nope").exists() and not list(tmp_path.glob(".nope*"))


def test_model_card_reports_data_parameters_and_metrics(exported, apt_checkpoint):
    from huggingface_hub import ModelCard

    from apt_core.checkpoint import load_checkpoint

    card = ModelCard.load(str(exported / "README.md"))
    params = load_checkpoint(apt_checkpoint).model.num_parameters()
    assert f"{params:,}" in card.text
    assert "hf:wikitext:wikitext-2-raw-v1:train" in card.text
    assert "| eval_perplexity | 15.64 |" in card.text
    assert card.data.library_name == "transformers" and "apt" in card.data.tags
    assert card.data.datasets == ["wikitext"]


def test_cli_export_through_core_export_and_hf_group(apt_cli, apt_checkpoint, tmp_path):
    result = apt_cli("export", apt_checkpoint, tmp_path / "core", "--format", "hf", "-o", "shard_size=40KB")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "core" / "model.safetensors.index.json").is_file()

    result = apt_cli("hf", "export", apt_checkpoint, tmp_path / "group", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["as"] == "apt"

    again = apt_cli("hf", "export", apt_checkpoint, tmp_path / "group")
    assert again.exit_code == 2 and "already exists" in again.stderr

    bad = apt_cli("export", apt_checkpoint, tmp_path / "bad", "--format", "hf", "-o", "colour=blue")
    assert bad.exit_code == 2 and "unknown hf export option" in bad.stderr
    missing = apt_cli("hf", "export", tmp_path / "nowhere", tmp_path / "x")
    assert missing.exit_code == 2 and "checkpoint not found" in missing.stderr


def test_hf_check_command_passes_on_an_export(apt_cli, exported, apt_checkpoint):
    result = apt_cli("hf", "check", exported, "--checkpoint", apt_checkpoint, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and report["greedy_equal"] and report["max_abs_logit_diff"] < 1e-5


def test_hf_check_command_fails_on_tampered_weights(apt_cli, exported, apt_checkpoint, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "tampered"
    shutil.copytree(exported, folder)
    state = load_file(str(folder / "model.safetensors"))
    state["model.norm.weight"] = state["model.norm.weight"] + 0.5
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    result = apt_cli("hf", "check", folder, "--checkpoint", apt_checkpoint)
    assert result.exit_code == 2 and "check failed" in result.stderr
    assert torch is not None
