"""``apt-model distill`` end to end: through the core Trainer (hooks, checkpoints, resume), any model loader."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import apt_plugin_distill.plugin as distill_plugin
from apt_core import APTConfig, APTModel, hookimpl
from apt_core.checkpoint import load_checkpoint, write_latest
from apt_core.errors import APTError
from apt_core.model.serialization import read_safetensors
from apt_plugin_distill.objective import DistillationModule, DistillSettings
from apt_plugin_distill.runner import check_vocab
from apt_plugin_distill.student import student_from_teacher

COMMON = ["--batch-size", "8", "--seq-len", "32", "--eval-blocks", "8", "--no-progress", "--lr", "5e-3"]


class Recorder:
    """A plugin that records the Trainer's lifecycle hooks."""

    def __init__(self):
        self.steps, self.saved, self.ended = [], [], []

    @hookimpl
    def apt_train_step_end(self, step, metrics):
        self.steps.append((step, dict(metrics)))

    @hookimpl
    def apt_checkpoint_saved(self, path):
        self.saved.append(path)

    @hookimpl
    def apt_train_end(self, metrics):
        self.ended.append(metrics)


@pytest.fixture
def small_student_config(tmp_path):
    path = tmp_path / "student.json"
    path.write_text(json.dumps({"vocab_size": 260, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32,
                                "max_seq_len": 64}))
    return path


def test_distill_lowers_kd_loss_and_writes_an_ordinary_checkpoint(apt_pm, apt_cli, distill_teacher,
                                                                  distill_text_file, small_student_config, tmp_path):
    recorder = Recorder()
    apt_pm(distill_plugin, recorder)
    out = tmp_path / "student"
    result = apt_cli("distill", "--teacher", distill_teacher, "--student-config", small_student_config,
                     "--data", distill_text_file, "--steps", "40", "--out", out, "--json", *COMMON)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # The KD term fell over training (logged every 10 steps by the Trainer, seen through the hook).
    kd = [m["kd"] for _, m in recorder.steps if "kd" in m]
    assert len(kd) == 4 and kd[-1] < 0.8 * kd[0], kd
    assert summary["student"]["perplexity"] < summary["student"]["perplexity_before"]
    assert summary["teacher"]["parameters"] > summary["student"]["parameters"] > 0
    assert summary["tokens_per_second"] > 0 and summary["steps"] == 40 and summary["tokens_seen"] == 40 * 8 * 32
    # Lifecycle hooks ran; the checkpoint is a plain APT checkpoint of the student.
    assert [p.name for p in recorder.saved] == ["checkpoint-0000040"] and len(recorder.ended) == 1
    ckpt = load_checkpoint(out)
    assert ckpt.model.config.n_layers == 1 and ckpt.tokenizer is not None
    assert set(read_safetensors(ckpt.path / "model.safetensors")) == set(APTModel(ckpt.model.config).state_dict())
    assert (out / "distill_summary.json").is_file()


def test_human_summary_and_student_from_teacher(apt_pm, apt_cli, distill_teacher, distill_text_file, tmp_path):
    apt_pm(distill_plugin)
    result = apt_cli("distill", "--teacher", distill_teacher, "--student-from-teacher", "1", "--data",
                     distill_text_file, "--steps", "5", "--method", "combined", "--attention-weight", "0.5",
                     "--out", tmp_path / "s", *COMMON)
    assert result.exit_code == 0, result.output
    for needle in ("teacher", "student", "parameters", "eval perplexity", "tokens/s", "checkpoint-0000005"):
        assert needle in result.stdout
    assert (tmp_path / "s" / "distill-projections" / "checkpoint-0000005.safetensors").is_file()


def test_feature_distillation_resume_equals_an_uninterrupted_run(apt_pm, apt_cli, distill_teacher,
                                                                 distill_text_file, small_student_config, tmp_path):
    apt_pm(distill_plugin)
    base = ["distill", "--teacher", distill_teacher, "--student-config", small_student_config, "--data",
            distill_text_file, "--steps", "8", "--save-every", "4", "--method", "feature", *COMMON]
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert apt_cli(*base, "--out", straight).exit_code == 0
    assert apt_cli(*base, "--out", broken).exit_code == 0
    # Pretend the second run died after step 4: drop its last checkpoint, point latest back.
    import shutil

    shutil.rmtree(broken / "checkpoint-0000008")
    write_latest(broken, "checkpoint-0000004")
    (broken / "distill_summary.json").unlink()
    resumed = apt_cli(*base, "--out", broken, "--resume")
    assert resumed.exit_code == 0, resumed.output
    a = read_safetensors(straight / "checkpoint-0000008" / "model.safetensors")
    b = read_safetensors(broken / "checkpoint-0000008" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run diverged from the uninterrupted one"
    pa = read_safetensors(straight / "distill-projections" / "checkpoint-0000008.safetensors")
    pb = read_safetensors(broken / "distill-projections" / "checkpoint-0000008.safetensors")
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not any(k.startswith("proj") for k in a)  # projections never enter the student checkpoint


class ToyCausalLM(torch.nn.Module):
    """Not an APT model: what a third-party model loader might return (like an hf: model)."""

    def __init__(self, vocab=260, width=24):
        super().__init__()
        self.config = SimpleNamespace(vocab_size=vocab, hidden_size=width)
        self.embed = torch.nn.Embedding(vocab, width)
        self.mix = torch.nn.Linear(width, width)
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False):
        h0 = self.embed(input_ids)
        h1 = torch.tanh(self.mix(h0.cumsum(1) / torch.arange(1, h0.shape[1] + 1)[None, :, None]))
        return SimpleNamespace(logits=self.head(h1), hidden_states=(h0, h1) if output_hidden_states else None)


class ToyLoader:
    @hookimpl
    def apt_register_model_loaders(self, register):
        register("toy", lambda location: ToyCausalLM(vocab=int(location or 260)))


def test_teacher_from_another_model_loader(apt_pm, apt_cli, distill_teacher, distill_text_file,
                                           small_student_config, tmp_path):
    apt_pm(distill_plugin, ToyLoader())
    tokenizer_dir = load_checkpoint(distill_teacher).path
    result = apt_cli("distill", "--teacher", "toy:260", "--student-config", small_student_config, "--tokenizer",
                     tokenizer_dir, "--data", distill_text_file, "--steps", "3", "--method", "combined",
                     "--out", tmp_path / "s", *COMMON)
    assert result.exit_code == 0, result.output
    bad = apt_cli("distill", "--teacher", "toy:300", "--student", distill_teacher, "--data", distill_text_file,
                  "--steps", "3", "--out", tmp_path / "t", *COMMON)
    assert bad.exit_code == 2 and "teacher vocabulary has 300 tokens, student vocabulary 260" in bad.stderr
    assert "Traceback" not in bad.output


@pytest.mark.parametrize("args, message", [
    (["--student-config", "tiny", "--student-from-teacher", "0"], "exactly one of"),
    ([], "exactly one of"),
    (["--student-from-teacher", "0,7"], "out of range"),
    (["--student-from-teacher", "1,0"], "increasing"),
    (["--student-config", "nope.json"], "neither a preset"),
    (["--student-config", "tiny", "--alpha", "1.5"], "alpha must be in [0, 1]"),
    (["--student-config", "tiny", "--seq-len", "500"], "exceeds the student's max_seq_len"),
])
def test_user_errors_are_one_line(apt_pm, apt_cli, distill_teacher, distill_text_file, tmp_path, args, message):
    apt_pm(distill_plugin)
    result = apt_cli("distill", "--teacher", distill_teacher, "--data", distill_text_file, "--steps", "2",
                     "--out", tmp_path / "o", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "o" / "latest").exists()


def test_mismatched_student_vocab_and_existing_run_are_refused(apt_pm, apt_cli, distill_teacher, distill_text_file,
                                                               tmp_path):
    apt_pm(distill_plugin)
    cfg = tmp_path / "wrong.json"
    cfg.write_text(json.dumps({"vocab_size": 300, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}))
    result = apt_cli("distill", "--teacher", distill_teacher, "--student-config", cfg, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "vocab_size 300" in result.stderr
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "latest").write_text("checkpoint-0000001")
    again = apt_cli("distill", "--teacher", distill_teacher, "--student-config", "tiny", "--out", tmp_path / "run")
    assert again.exit_code == 2 and "--resume" in again.stderr
    with pytest.raises(APTError, match="teacher vocabulary"):
        check_vocab(ToyCausalLM(vocab=100), APTModel(APTConfig(vocab_size=260, d_model=16, n_heads=2)))


def test_config_section_defaults_and_validation(apt_pm, apt_cli, distill_teacher, tmp_path):
    apt_pm(distill_plugin)
    from apt_core.config import get_config

    assert get_config().plugin("distill")["method"] == "response"
    result = apt_cli("--set", "distill.method=magic", "distill", "--teacher", distill_teacher,
                     "--student-config", "tiny", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "plugins.distill.method" in result.stderr


def test_student_from_teacher_copies_the_chosen_blocks():
    torch.manual_seed(0)
    teacher = APTModel(APTConfig(vocab_size=50, d_model=16, n_layers=3, n_heads=2, d_ff=[32, 24, 40]))
    student = student_from_teacher(teacher, [0, 2])
    assert student.config.n_layers == 2 and student.config.d_ff == [32, 40]
    t, s = teacher.state_dict(), student.state_dict()
    assert torch.equal(s["embed.weight"], t["embed.weight"])
    assert all(torch.equal(s[k], t[k.replace("layers.1.", "layers.2.", 1)]) for k in s if k.startswith("layers.1."))
    assert all(torch.equal(s[k], t[k]) for k in s if k.startswith("layers.0."))
    # A one-block teacher copy of every block is the teacher itself.
    same = student_from_teacher(teacher, [0, 1, 2])
    ids = torch.randint(0, 50, (1, 9))
    assert torch.allclose(same(ids).logits, teacher.eval()(ids).logits)


def test_the_teacher_is_neither_trained_nor_saved():
    torch.manual_seed(0)
    cfg = APTConfig(vocab_size=50, d_model=16, n_layers=2, n_heads=2, d_ff=32)
    teacher, student = APTModel(cfg), APTModel(cfg.replace(n_layers=1))
    module = DistillationModule(student, teacher, DistillSettings(method="combined"))
    trained = {id(p) for p in module.parameters()}
    assert not trained & {id(p) for p in teacher.parameters()}
    assert trained > {id(p) for p in student.parameters()}  # plus the projections
    assert module.state_dict().keys() == student.state_dict().keys()
    ids = torch.randint(0, 50, (2, 8))
    loss, metrics = module(ids, distill=True)
    loss.backward()
    assert set(metrics) == {"kd", "ce", "feature", "relation"}
    assert all(p.grad is None for p in teacher.parameters())
    assert module.projections.proj[0].weight.grad is not None


def test_plugin_module_imports_no_torch_and_help_lists_the_options():
    code = "import sys, apt_plugin_distill.plugin; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_help(apt_pm, apt_cli):
    apt_pm(distill_plugin)
    result = apt_cli("distill", "--help")
    assert result.exit_code == 0
    for option in ("--teacher", "--student-from-teacher", "--method", "--temperature", "--alpha", "--resume"):
        assert option in result.stdout
