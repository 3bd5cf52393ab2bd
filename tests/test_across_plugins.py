"""Plugins working on each other's output: what a user chains on the command line."""

import json


def test_structurally_pruned_model_exports_to_transformers_with_equal_logits(apt_cli, tiny_checkpoint, tmp_path):
    pruned, exported = tmp_path / "pruned", tmp_path / "hf"
    result = apt_cli("prune", tiny_checkpoint, "--structured", "heads,ffn", "--sparsity", "0.5", "--out", pruned)
    assert result.exit_code == 0, result.output
    config = json.loads(next(pruned.glob("checkpoint-*/config.json")).read_text())
    per_layer = lambda value: value if isinstance(value, list) else [value] * config["n_layers"]  # noqa: E731
    assert max(per_layer(config["n_heads"])) < 2 and max(per_layer(config["d_ff"])) < 64  # tiny has 2 heads, d_ff 64
    assert apt_cli("hf", "export", pruned, exported).exit_code == 0
    check = apt_cli("hf", "check", exported, "--checkpoint", pruned, "--json")
    assert check.exit_code == 0, check.output
    report = json.loads(check.stdout)
    assert report["passed"] and report["greedy_equal"] and report["max_abs_logit_diff"] < 1e-5


def test_a_distilled_student_backs_up_and_restores_byte_identical(apt_cli, tiny_checkpoint, tmp_path):
    student, store, restored = tmp_path / "student", (tmp_path / "store").as_uri(), tmp_path / "restored"
    result = apt_cli("distill", "--teacher", tiny_checkpoint, "--student-config", "tiny", "--steps", "2",
                     "--out", student)
    assert result.exit_code == 0, result.output
    assert apt_cli("backup", student, store, "--name", "student", "-q").exit_code == 0
    assert apt_cli("restore", store, "student", restored, "-q").exit_code == 0
    latest = student / (student / "latest").read_text().strip()
    for file in latest.iterdir():
        assert (restored / file.name).read_bytes() == file.read_bytes()
