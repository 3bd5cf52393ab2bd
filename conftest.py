"""Settings for every test run from the repository root.

Our suite runs plugins in strict mode (a plugin failure is an error), except the tests that
exercise failure isolation. The fixture plugins that fail on purpose are disabled by default when
they are installed, and a developer's own config files never leak into a test.
"""

import os
import tempfile

import importlib_metadata

FAILING_FIXTURE_PLUGINS = {"fixture-broken", "fixture-misspelled", "fixture-oldapi", "fixture-future"}


def pytest_configure(config):
    os.environ.setdefault("APT_STRICT_PLUGINS", "1")
    os.environ.setdefault("APT_CONFIG_HOME", tempfile.mkdtemp(prefix="apt-config-"))
    installed = {ep.name for ep in importlib_metadata.entry_points(group="apt.plugins")}
    failing = sorted(FAILING_FIXTURE_PLUGINS & installed)
    if failing and "APT_DISABLE_PLUGINS" not in os.environ:
        os.environ["APT_DISABLE_PLUGINS"] = ",".join(failing)
