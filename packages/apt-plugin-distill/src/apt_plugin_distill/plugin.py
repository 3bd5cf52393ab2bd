"""Entry point of the ``distill`` plugin: hook implementations only, no heavy imports at module level."""

APT_API_VERSION = 1
