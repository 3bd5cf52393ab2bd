"""Every hookspec is documented in docs/hooks.md with its exact signature (datasette's docs test)."""

import inspect
import re
from pathlib import Path

import pluggy

from apt_core import hookspecs

DOCS = Path(__file__).resolve().parents[3] / "docs" / "hooks.md"


def specs() -> dict[str, str]:
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return {
        name: f"{name}{inspect.signature(function)}"
        for name, function in vars(hookspecs).items()
        if callable(function) and hasattr(function, marker)
    }


def documented() -> dict[str, str]:
    headings = re.findall(r"^### `((apt_\w+)\(.*\))`$", DOCS.read_text(), flags=re.MULTILINE)
    return {name: signature for signature, name in headings}


def test_there_are_hookspecs():
    assert {"apt_register_commands", "apt_train_end", "apt_checkpoint_saved"} <= set(specs())


def test_every_hookspec_is_documented_with_its_signature():
    assert documented() == specs()


def test_every_hookspec_docstring_follows_the_template():
    for name in specs():
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and ":return:" in doc, name
        for parameter in inspect.signature(getattr(hookspecs, name)).parameters:
            assert f":param {parameter}:" in doc, (name, parameter)


def test_hookimpl_marker_is_the_projects():
    assert isinstance(hookspecs.hookimpl, pluggy.HookimplMarker) and hookspecs.hookimpl.project_name == "apt"
