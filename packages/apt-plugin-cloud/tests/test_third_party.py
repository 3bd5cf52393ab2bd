"""A third-party package adds a storage scheme through apt_register_storage, the same way we do."""

from __future__ import annotations

from cloud_testlib import tree_bytes

from apt_core import hookimpl
from apt_plugin_cloud.backends.base import Backend, ObjectInfo
from apt_plugin_cloud.retry import NotFoundError
from apt_plugin_cloud.settings import open_store
from apt_plugin_cloud.transfer import backup


class MemoryBackend(Backend):
    """A dict-backed store, the smallest possible implementation of the protocol."""

    stores: dict[str, dict[str, bytes]] = {}

    def __init__(self, url: str):
        self.url = url
        self.data = self.stores.setdefault(url, {})

    def put(self, key, data, *, if_absent=False):
        if if_absent and key in self.data:
            return False
        self.data[key] = bytes(data)
        return True

    def get(self, key):
        try:
            return self.data[key]
        except KeyError:
            raise NotFoundError(key) from None

    def exists(self, key):
        return key in self.data

    def list(self, prefix):
        return iter([ObjectInfo(k, len(v)) for k, v in sorted(self.data.items()) if k.startswith(prefix)])

    def delete(self, key):
        self.data.pop(key, None)


class MemoryPlugin:
    @hookimpl
    def apt_register_storage(self, register):
        register("mem", MemoryBackend)


def test_third_party_scheme(apt_pm, apt_cli, checkpoint, tmp_path):
    import apt_plugin_cloud.plugin

    apt_pm(apt_plugin_cloud.plugin, MemoryPlugin())
    store = open_store("mem://bucket")
    assert isinstance(store, MemoryBackend)
    backup(checkpoint, store, name="s")
    result = apt_cli("restore", "mem://bucket", "s", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    assert tree_bytes(tmp_path / "out") == tree_bytes(checkpoint)
