"""The plugin manager: registration, failure isolation, conflicts, registries, tracing."""

import logging
import types

import pytest

from apt_core import hookimpl
from apt_core.errors import APTError
from apt_core.plugins import make_plugin_manager, plugin_infos
from apt_core.registry import get_registry


def plugin(name, **hooks):
    """A plugin object with the given hook implementations (what a plugin module would hold)."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def test_builtin_core_plugin_registers_file_and_default_data_sources(apt_pm):
    pm = apt_pm()
    registry = get_registry("data_sources", pm)
    assert {"file", "default"} <= set(registry.names())
    assert registry.owner("file").startswith("apt-core")
    assert "apt" in get_registry("model_loaders", pm)


def test_registered_names_are_visible_through_the_registry(apt_pm):
    def apt_register_storage(register):
        register("mem", dict)

    pm = apt_pm(plugin("memstore", apt_register_storage=apt_register_storage))
    assert get_registry("storage", pm).get("mem") is dict


def test_unknown_name_lists_known_ones_and_the_plugin_to_install(apt_pm):
    pm = apt_pm()
    with pytest.raises(APTError, match=r"unknown storage scheme 's3' \(known: none; .*apt-plugin-cloud"):
        get_registry("storage", pm).get("s3")


def test_two_plugins_registering_the_same_name_is_an_error_naming_both(apt_pm):
    def first(register):
        register("dup", 1)

    def second(register):
        register("dup", 2)

    pm = apt_pm(plugin("one", apt_register_exporters=first), plugin("two", apt_register_exporters=second))
    with pytest.raises(APTError, match=r"export format 'dup' is registered by both plugin 'one' and plugin 'two'"):
        get_registry("exporters", pm)


def test_wrong_hook_signature_fails_only_that_plugin(caplog):
    def apt_train_start(trainer, unexpected_argument):
        pass

    def apt_register_storage(register):
        register("ok", object)

    bad, good = plugin("bad", apt_train_start=apt_train_start), plugin("good", apt_register_storage=apt_register_storage)
    with caplog.at_level(logging.WARNING):
        pm = make_plugin_manager(entry_points=False, plugins=[bad, good], strict=False)
    status = {info.name: info for info in plugin_infos(pm)}
    assert status["bad"].status == "failed" and "unexpected_argument" in status["bad"].error
    assert status["good"].status == "active"
    assert "ok" in get_registry("storage", pm)
    assert "APT_DISABLE_PLUGINS=bad" in caplog.text


def test_misspelled_hook_is_reported_with_a_suggestion():
    def apt_train_stat(trainer):
        pass

    pm = make_plugin_manager(entry_points=False, plugins=[plugin("typo", apt_train_stat=apt_train_stat)], strict=False)
    info = {i.name: i for i in plugin_infos(pm)}["typo"]
    assert info.status == "failed"
    assert "did you mean 'apt_train_start'" in info.error
    assert pm.get_plugin("typo") is None


def test_strict_mode_turns_a_plugin_failure_into_an_error():
    def apt_train_stat(trainer):
        pass

    with pytest.raises(APTError, match="plugin 'typo' failed"):
        make_plugin_manager(entry_points=False, plugins=[plugin("typo", apt_train_stat=apt_train_stat)], strict=True)


def test_a_plugin_raising_while_registering_is_isolated():
    def boom(register):
        raise RuntimeError("bug in plugin")

    def fine(register):
        register("fine", object)

    pm = make_plugin_manager(
        entry_points=False, plugins=[plugin("boom", apt_register_storage=boom), plugin("fine", apt_register_storage=fine)],
        strict=False,
    )
    assert get_registry("storage", pm).names() == ["fine"]
    assert {i.name: i.status for i in plugin_infos(pm)}["boom"] == "failed"


def test_lifecycle_hooks_reach_every_plugin_in_order(apt_pm):
    calls = []

    def apt_train_step_end(trainer, step, metrics):
        calls.append((step, metrics["loss"]))

    pm = apt_pm(plugin("rec", apt_train_step_end=apt_train_step_end))
    pm.hook.apt_train_step_end(trainer=None, step=3, metrics={"loss": 1.5})
    assert calls == [(3, 1.5)]


def test_tracing_logs_each_hook_call_with_duration(caplog):
    def apt_train_start(trainer):
        pass

    pm = make_plugin_manager(entry_points=False, plugins=[plugin("t", apt_train_start=apt_train_start)], trace=True)
    with caplog.at_level(logging.WARNING, logger="apt_core.trace"):
        pm.hook.apt_train_start(trainer=None)
    assert any("hook apt_train_start [t]" in r.message and "ms" in r.message for r in caplog.records)


def test_unknown_names_in_plugin_lists_are_an_error():
    with pytest.raises(APTError, match="unknown plugin name"):
        make_plugin_manager(load=["no-such-plugin"])
    with pytest.raises(APTError, match="unknown plugin name"):
        make_plugin_manager(disable=["no-such-plugin"])


def test_load_list_empty_loads_no_entry_point_plugin():
    pm = make_plugin_manager(load=[])
    assert all(info.status in ("disabled", "builtin") for info in plugin_infos(pm))
