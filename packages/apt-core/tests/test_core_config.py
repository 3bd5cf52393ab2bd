"""Layered configuration: defaults < user < ./apt.toml < env < CLI, validated by the owning plugin."""

import types

import pytest

from apt_core import hookimpl
from apt_core.config import build_config
from apt_core.errors import APTError


def config_plugin(validate=None):
    def apt_register_config(register):
        register("demo", {"url": "file:///default", "workers": 2, "targets": []}, validate)

    module = types.ModuleType("demo")
    module.apt_register_config = hookimpl(apt_register_config)
    return module


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APT_CONFIG_HOME", str(tmp_path / "user"))
    (tmp_path / "user").mkdir()
    return tmp_path


def test_precedence_cli_over_env_over_project_over_user_over_defaults(workdir, monkeypatch, apt_pm):
    pm = apt_pm(config_plugin())
    assert build_config(pm).plugin("demo")["workers"] == 2
    (workdir / "user" / "config.toml").write_text('[plugins.demo]\nworkers = 3\nurl = "file:///user"\n')
    assert build_config(pm).plugin("demo")["workers"] == 3
    (workdir / "apt.toml").write_text("[plugins.demo]\nworkers = 4\n")
    cfg = build_config(pm)
    assert cfg.plugin("demo") == {"url": "file:///user", "workers": 4, "targets": []}
    assert cfg.sources[("demo", "workers")] == "apt.toml"
    monkeypatch.setenv("APT_DEMO__WORKERS", "5")
    monkeypatch.setenv("APT_DEMO__TARGETS", '["s3://b/p", "file:///x"]')
    cfg = build_config(pm)
    assert cfg.plugin("demo")["workers"] == 5 and cfg.plugin("demo")["targets"] == ["s3://b/p", "file:///x"]
    assert build_config(pm, ["demo.workers=6"]).plugin("demo")["workers"] == 6


def test_unknown_key_and_wrong_type_are_clear_errors(workdir, apt_pm):
    pm = apt_pm(config_plugin())
    (workdir / "apt.toml").write_text("[plugins.demo]\nworker = 4\n")
    with pytest.raises(APTError, match=r"unknown setting plugins.demo.worker from apt.toml \(known: targets, url, workers\)"):
        build_config(pm)
    (workdir / "apt.toml").write_text('[plugins.demo]\nworkers = "many"\n')
    with pytest.raises(APTError, match="plugins.demo.workers from apt.toml must be int"):
        build_config(pm)


def test_validator_of_the_owning_plugin_runs(workdir, apt_pm):
    def validate(values):
        if values["workers"] < 1:
            raise APTError("plugins.demo.workers must be >= 1")
        return values

    pm = apt_pm(config_plugin(validate))
    with pytest.raises(APTError, match="workers must be >= 1"):
        build_config(pm, ["demo.workers=0"])


def test_broken_toml_names_the_file(workdir, apt_pm):
    pm = apt_pm(config_plugin())
    (workdir / "apt.toml").write_text("[plugins.demo\n")
    with pytest.raises(APTError, match="invalid config file apt.toml"):
        build_config(pm)


def test_config_disable_list_is_applied_before_loading(workdir, apt_cli):
    (workdir / "apt.toml").write_text('[plugins]\ndisable = ["no-such-plugin"]\n')
    result = apt_cli("plugins")
    assert result.exit_code == 2
    assert "unknown plugin name(s) no-such-plugin" in result.stderr


def test_config_show_lists_values_with_sources(workdir, apt_pm, apt_cli):
    apt_pm(config_plugin())
    (workdir / "apt.toml").write_text("[plugins.demo]\nworkers = 7\n")
    result = apt_cli("config", "show")
    assert result.exit_code == 0, result.output
    assert "[plugins.demo]" in result.stdout and "workers = 7  # apt.toml" in result.stdout
