"""The plugin's wiring: lazy imports, registrations, configuration, hook-level behaviour."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "huggingface_hub", "datasets", "safetensors")


def test_help_and_hf_help_import_nothing_heavy():
    code = (
        "import sys\n"
        "from apt_core.cli import main\n"
        "for args in (['--help'], ['hf', '--help'], ['hf', 'train', '--help'], ['plugins', '--json']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    env = {"APT_LOAD_PLUGINS": "hf", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout, out.stdout[-500:]
    assert "export" in out.stdout and "--deepspeed" in out.stdout


def test_plugin_registers_every_piece(apt_cli):
    from apt_core.registry import get_registry

    for kind in ("data_sources", "model_loaders", "exporters"):
        assert "hf" in get_registry(kind).names()
    result = apt_cli("hf", "--help")
    assert result.exit_code == 0
    for command in ("export", "import", "push", "pull", "check", "train"):
        assert command in result.stdout


def test_config_section_defaults_and_validation(apt_cli, apt_pm, monkeypatch):
    import apt_plugin_hf.plugin

    shown = apt_cli("config", "show", "--json")
    assert shown.exit_code == 0, shown.output
    assert '"auto_upload"' in shown.stdout and '"shard_size"' in shown.stdout
    monkeypatch.setenv("APT_HF__SHARD_SIZE", "lots")
    apt_pm(apt_plugin_hf.plugin)  # a fresh manager: the configuration is read once per manager
    bad = apt_cli("config", "show")
    assert bad.exit_code == 2 and "invalid size 'lots'" in bad.stderr
    monkeypatch.setenv("APT_HF__SHARD_SIZE", "1GB")
    monkeypatch.setenv("APT_HF__AUTO_UPLOAD", "not a repo id!")
    apt_pm(apt_plugin_hf.plugin)
    bad = apt_cli("config", "show")
    assert bad.exit_code == 2 and "auto_upload must be a Hub repo id" in bad.stderr


@pytest.mark.parametrize("text,expected", [("2GB", 2 * 10**9), ("500MB", 5 * 10**8), ("64KiB", 65536),
                                           ("1.5GB", 1_500_000_000), (1234, 1234)])
def test_parse_size(text, expected):
    from apt_plugin_hf.weights import parse_size

    assert parse_size(text) == expected


def test_parse_size_rejects_garbage():
    from apt_core.errors import APTError
    from apt_plugin_hf.weights import parse_size

    for value in ("", "-1GB", "2 parsecs", 0):
        with pytest.raises(APTError):
            parse_size(value)


def test_retry_backoff_honours_retry_after_and_stops_on_auth_errors():
    from huggingface_hub.errors import HfHubHTTPError

    from apt_plugin_hf.hub import _httpx, with_retries

    httpx2 = _httpx()  # httpx2 with huggingface_hub 2.x, httpx with 1.x

    def error(status, headers=None):
        request = httpx2.Request("GET", "http://127.0.0.1/x")
        response = httpx2.Response(status, headers=headers or {}, request=request)
        return HfHubHTTPError(f"{status}", response=response)

    sleeps, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise error(429, {"Retry-After": "7"})
        if len(calls) == 2:
            raise error(503)
        return "ok"

    assert with_retries(flaky, what="t", attempts=5, base_delay=0.5, sleep=sleeps.append) == "ok"
    assert sleeps == [7.0, 1.0]  # Retry-After wins; then 0.5 * 2**1

    def denied():
        calls.append(1)
        raise error(401)

    calls.clear()
    with pytest.raises(HfHubHTTPError):
        with_retries(denied, what="t", attempts=5, base_delay=0.0, sleep=sleeps.append)
    assert len(calls) == 1


def test_plugins_listing_reports_hooks(apt_cli):
    result = apt_cli("plugins", "--json")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    entries = listing if isinstance(listing, list) else listing.get("plugins", [])
    hf = [p for p in entries if p.get("name") == "hf" or "apt_plugin_hf" in str(p)]
    assert hf, result.stdout
