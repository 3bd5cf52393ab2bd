"""Third-party plugins installed as real distributions (tests/fixture_plugins/*), seen through the CLI.

The fixture distributions are installed by the nox ``tests`` session; these tests skip if absent.
"""

import json
import os
import subprocess
import sys

import importlib_metadata
import pytest

FIXTURES = {"fixture-good", "fixture-broken", "fixture-misspelled", "fixture-oldapi", "fixture-future"}
installed = {ep.name for ep in importlib_metadata.entry_points(group="apt.plugins")}
pytestmark = pytest.mark.skipif(not FIXTURES <= installed, reason="fixture plugins not installed")


def apt_model(*args, **env):
    """Run the real console entry point in a subprocess with the plugin-control variables given."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("APT_LOAD", "APT_DISABLE", "APT_STRICT"))}
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "apt_core", *args], capture_output=True, text=True, env=environ)


def statuses(result):
    return {info["name"]: info for info in json.loads(result.stdout)}


def test_each_fixture_gets_its_status_and_everything_else_keeps_working():
    result = apt_model("plugins", "--json")
    assert result.returncode == 0, result.stderr
    infos = statuses(result)
    assert infos["fixture-good"]["status"] == "active"
    assert infos["fixture-good"]["distribution"] == "apt-fixture-good"
    assert set(infos["fixture-good"]["hooks"]) == {"apt_register_commands", "apt_register_config", "apt_train_step_end"}
    assert infos["fixture-broken"]["status"] == "failed" and "definitely_not_installed" in infos["fixture-broken"]["error"]
    assert infos["fixture-misspelled"]["status"] == "failed"
    assert "did you mean 'apt_register_commands'" in infos["fixture-misspelled"]["error"]
    assert infos["fixture-oldapi"]["status"] == "incompatible" and "hook API 2" in infos["fixture-oldapi"]["error"]
    # Refused from metadata alone: its module raises if imported, and it was not.
    assert infos["fixture-future"]["status"] == "incompatible" and "apt-core<10,>=9" in infos["fixture-future"]["error"]
    # One warning per failed plugin, each saying how to disable it.
    for name in ("fixture-broken", "fixture-misspelled", "fixture-oldapi", "fixture-future"):
        assert result.stderr.count(f"APT_DISABLE_PLUGINS={name}") == 1


def test_good_plugin_command_runs_and_reads_its_config(tmp_path):
    result = apt_model("fixture-hello", "--name", "APT", APT_DISABLE_PLUGINS="fixture-broken")
    assert result.returncode == 0 and result.stdout == "hello, APT\n"
    result = apt_model("--set", "fixture.greeting=ahoy", "fixture-hello")
    assert result.stdout == "ahoy, world\n"
    result = apt_model("fixture-hello", APT_FIXTURE__GREETING="  ")
    assert result.returncode == 2 and result.stderr.strip().endswith("plugins.fixture.greeting must not be empty")


def test_strict_mode_fails_with_exit_2():
    result = apt_model("plugins", APT_STRICT_PLUGINS="1")
    assert result.returncode == 2 and result.stderr.startswith("error: plugin '") and " failed" in result.stderr


def test_load_and_disable_lists():
    assert statuses(apt_model("plugins", "--json", APT_LOAD_PLUGINS="")) == {}
    only = statuses(apt_model("plugins", "--json", APT_LOAD_PLUGINS="fixture-good"))
    assert set(only) == {"fixture-good"}
    rest = statuses(apt_model("plugins", "--json", "--all", APT_DISABLE_PLUGINS="fixture-broken,fixture-good"))
    assert rest["fixture-good"]["status"] == rest["fixture-broken"]["status"] == "disabled"
    assert apt_model("plugins", APT_DISABLE_PLUGINS="fixture-typo").returncode == 2


def test_no_plugins_flag():
    assert statuses(apt_model("--no-plugins", "plugins", "--json")) == {}
    assert "fixture-hello" not in apt_model("--no-plugins", "--help").stdout
