"""A plugin that raises on import, as a plugin with a missing dependency would."""

raise ImportError("No module named 'definitely_not_installed'")
