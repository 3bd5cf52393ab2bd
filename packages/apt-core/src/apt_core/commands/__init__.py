"""Core ``apt-model`` commands, one module each, imported lazily by :mod:`apt_core.cli`."""
