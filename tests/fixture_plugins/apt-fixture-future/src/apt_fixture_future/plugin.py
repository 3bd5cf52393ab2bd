"""A plugin whose metadata requires a future apt-core: it must be refused before this runs."""

raise AssertionError("an incompatible plugin's code must not run")
