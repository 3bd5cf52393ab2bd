"""All five packages installed together: every plugin is active, and start-up stays light."""

import json
import subprocess
import sys

OUR_PLUGINS = {"hf": "apt-plugin-hf", "cloud": "apt-plugin-cloud", "distill": "apt-plugin-distill",
               "prune": "apt-plugin-prune"}
PLUGIN_COMMANDS = {"hf", "backup", "restore", "backups", "sync", "distill", "prune"}
HEAVY = ["torch", "transformers", "datasets", "huggingface_hub", "boto3", "botocore", "oss2", "modelscope",
         "modelscope_hub", "torch_pruning", "safetensors", "tokenizers", "matplotlib"]


def run(*args):
    return subprocess.run([sys.executable, "-m", "apt_core", *args], capture_output=True, text=True, check=True)


def test_our_four_plugins_are_active_with_their_hooks():
    infos = {info["name"]: info for info in json.loads(run("plugins", "--json").stdout)}
    for name, distribution in OUR_PLUGINS.items():
        assert infos[name]["status"] == "active", infos[name]
        assert infos[name]["distribution"] == distribution
        assert "apt_register_commands" in infos[name]["hooks"]
    assert "apt_register_storage" in infos["cloud"]["hooks"] and "apt_checkpoint_saved" in infos["cloud"]["hooks"]
    assert {"apt_register_exporters", "apt_register_model_loaders", "apt_register_data_sources"} <= set(
        infos["hf"]["hooks"])


def test_help_lists_every_plugin_command_without_importing_heavy_modules():
    code = ("import sys\nfrom apt_core.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    help_text, heavy = out.rsplit("HEAVY", 1)
    listed = {line.split()[0] for line in help_text.split("Commands:")[1].splitlines() if line.strip()}
    assert PLUGIN_COMMANDS <= listed
    assert heavy.strip() == "[]"


def test_registries_see_every_plugin_scheme():
    code = ("import json\nfrom apt_core.registry import get_registry\n"
            "print(json.dumps({kind: get_registry(kind).names()"
            " for kind in ('storage', 'exporters', 'model_loaders', 'data_sources')}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    names = json.loads(out)
    assert {"file", "s3", "oss", "hf", "modelscope"} <= set(names["storage"])
    assert "hf" in names["exporters"]
    assert {"apt", "hf"} <= set(names["model_loaders"])
    assert {"file", "default", "hf"} <= set(names["data_sources"])
