"""The ``hf:`` model loader: any local or Hub causal LM behind the APT model-loader interface."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """Tiny random Llama and GPT-2 models saved locally (no download)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("hf-models")
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))
    llama.save_pretrained(root / "llama")
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=300, n_embd=32, n_layer=2, n_head=2, n_positions=64))
    gpt2.save_pretrained(root / "gpt2")
    return {"llama": root / "llama", "gpt2": root / "gpt2"}


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_load_any_causal_lm_as_a_teacher(hf_dirs, arch):
    import torch
    from transformers import AutoModelForCausalLM

    from apt_core.models import load_model

    model = load_model(f"hf:{hf_dirs[arch]}")
    assert isinstance(model, torch.nn.Module) and not model.training
    reference = AutoModelForCausalLM.from_pretrained(str(hf_dirs[arch])).eval()
    ids = torch.randint(0, 300, (2, 12))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        out = model(ids, attention_mask=mask, output_hidden_states=True)
        ref = reference(ids, attention_mask=mask, output_hidden_states=True)
        assert torch.allclose(out.logits, ref.logits, atol=1e-6)
        assert len(out.hidden_states) == 3 and out.hidden_states[-1].shape == (2, 12, 32)
        assert model(ids).hidden_states is None
    assert model.vocab_size == 300


def test_apt_export_loads_without_remote_code(exported, apt_checkpoint):
    import torch

    from apt_core.checkpoint import load_checkpoint
    from apt_core.models import load_model

    teacher = load_model(f"hf:{exported}")
    assert type(teacher.model).__module__ == "apt_plugin_hf.remote.modeling_apt"  # our bundled classes
    apt = load_checkpoint(apt_checkpoint).model.eval()
    ids = torch.randint(4, apt.config.vocab_size, (2, 16))
    with torch.no_grad():
        out = teacher(ids, output_hidden_states=True)
        ref = apt(ids, output_hidden_states=True)
    assert float((out.logits - ref.logits).abs().max()) < 1e-5
    assert len(out.hidden_states) == len(ref.hidden_states)
    for a, b in zip(out.hidden_states, ref.hidden_states):
        assert float((a - b).abs().max()) < 1e-5


def test_hub_repo_id_and_errors(hub, exported, tmp_path):
    from apt_core.errors import APTError
    from apt_core.models import load_model
    from apt_plugin_hf.hub import push_folder

    push_folder(exported, "tester/teacher")
    teacher = load_model("hf:tester/teacher@main")
    assert teacher.config.model_type == "apt"
    with pytest.raises(APTError, match="tester/missing not found"):
        load_model("hf:tester/missing")
    with pytest.raises(APTError, match="neither a folder nor a Hub repo id"):
        load_model(f"hf:{tmp_path}/no/such dir")


def test_import_refuses_architectures_apt_cannot_express(apt_cli, hf_dirs, tmp_path):
    gpt2 = apt_cli("hf", "import", hf_dirs["gpt2"], tmp_path / "a")
    assert gpt2.exit_code == 2 and "model_type 'gpt2'" in gpt2.stderr and "--model hf:" in gpt2.stderr
    gqa = apt_cli("hf", "import", hf_dirs["llama"], tmp_path / "b")
    assert gqa.exit_code == 2 and "grouped-query attention" in gqa.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
