"""The apt-model command line: start-up cost, exit codes, plugin commands."""

import json
import subprocess
import sys
import types

import click

from apt_core import hookimpl

HEAVY_MODULES = ("torch", "transformers", "boto3", "botocore", "oss2", "huggingface_hub", "modelscope",
                 "torch_pruning", "datasets", "numpy", "safetensors", "tokenizers")


def imported_by(*args: str) -> set[str]:
    """Heavy modules imported by running ``apt-model ARGS`` in a fresh interpreter."""
    code = (
        "import sys\n"
        "from apt_core.cli import main\n"
        f"try:\n    main({list(args)!r})\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
        f"print('LOADED', [m for m in {HEAVY_MODULES!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(eval(out.rsplit("LOADED", 1)[1]))


def test_help_and_plugins_import_no_torch_and_no_sdk():
    assert imported_by("--help") == set()
    assert imported_by("plugins") == set()
    assert imported_by("plugins", "--json", "--all") == set()


def test_version(apt_cli):
    from apt_core import __version__

    result = apt_cli("--version")
    assert result.exit_code == 0 and __version__ in result.stdout


def test_python_dash_m_runs_the_same_cli():
    out = subprocess.run([sys.executable, "-m", "apt_core", "--help"], capture_output=True, text=True, check=True)
    assert "apt-model" in out.stdout and "plugins" in out.stdout


def test_no_plugins_flag_lists_none(apt_cli):
    result = apt_cli("--no-plugins", "plugins", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []


def test_unknown_plugin_in_load_list_is_one_line_and_exit_2(apt_cli, monkeypatch):
    monkeypatch.setenv("APT_LOAD_PLUGINS", "nope")
    result = apt_cli("plugins")
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: unknown plugin name(s) nope")


def test_plugin_command_is_added_and_runs(apt_pm, apt_cli):
    @click.command("greet")
    def greet():
        click.echo("hi from plugin")

    module = types.ModuleType("greeter")
    module.apt_register_commands = hookimpl(lambda cli: cli.add_command(greet))
    apt_pm(module)
    assert "greet" in apt_cli("--help").stdout
    assert apt_cli("greet").stdout == "hi from plugin\n"


def test_plugin_command_clashing_with_a_core_command_names_both(apt_pm, apt_cli):
    module = types.ModuleType("clash")
    module.apt_register_commands = hookimpl(lambda cli: cli.add_command(click.Command("train"), "train"))
    apt_pm(module)
    result = apt_cli("plugins")
    assert result.exit_code == 2
    assert "command 'train' is registered by both apt-core and plugin 'clash'" in result.stderr


def test_plugins_json_reports_status_and_hooks(apt_pm, apt_cli):
    def apt_train_end(trainer, metrics):
        pass

    module = types.ModuleType("ender")
    module.apt_train_end = hookimpl(apt_train_end)
    apt_pm(module)
    infos = {i["name"]: i for i in json.loads(apt_cli("plugins", "--json", "--all").stdout)}
    assert infos["ender"]["status"] == "active" and infos["ender"]["hooks"] == ["apt_train_end"]
    assert infos["core"]["status"] == "builtin"


def test_logs_are_redacted(apt_pm, apt_cli, caplog):
    import logging

    @click.command("leak")
    def leak():
        logging.getLogger("x").warning("request failed: Authorization: Bearer hf_abcdefghijklmnop")

    module = types.ModuleType("leaky")
    module.apt_register_commands = hookimpl(lambda cli: cli.add_command(leak))
    apt_pm(module)
    result = apt_cli("--debug", "leak")
    assert "hf_abcdefghijklmnop" not in result.stderr and "Authorization: Bearer ***" in result.stderr
