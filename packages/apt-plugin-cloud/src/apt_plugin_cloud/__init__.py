"""apt-plugin-cloud: verified, incremental backup / restore / sync of APT checkpoints.

Public API (importing it does not import any cloud SDK)::

    from apt_plugin_cloud import open_store, backup, restore, verify, sync, prune, list_snapshots
"""

from __future__ import annotations

__all__ = ["open_store", "backup", "restore", "verify", "sync", "prune", "list_snapshots", "TransferOptions"]


def __getattr__(name: str):
    # Lazy so that `import apt_plugin_cloud` stays cheap (the plugin module is imported at CLI start).
    if name in ("backup", "restore", "list_snapshots", "TransferOptions"):
        from . import transfer

        return getattr(transfer, name)
    if name in ("verify", "sync", "prune"):
        from . import maintain

        return getattr(maintain, name)
    if name == "open_store":
        from .settings import open_store

        return open_store
    raise AttributeError(name)
