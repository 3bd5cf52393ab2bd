"""Pytest fixtures for plugin authors (and for APT's own tests).

Installed with apt-core as a pytest plugin (entry point ``pytest11``), so any test suite gets:

``apt_pm``
    Factory ``apt_pm(*plugins, entry_points=False, strict=True, **options)`` building a plugin
    manager with the built-in core plugin plus the given plugin modules or objects, installed as the
    process-wide manager for the rest of the test (so the CLI, registries, config and trainer see it).
``apt_cli``
    ``apt_cli(*args) -> CLIResult(exit_code, stdout, stderr)``: runs ``apt-model`` in-process.
``tiny_checkpoint``
    Path of a tiny trained-for-zero-steps APT checkpoint (byte-level tokenizer), made once per session.

and the helpers :func:`run_workers`, which runs a script as one process or as N ``torchrun`` processes,
:func:`tiny_training_inputs`, what such a script trains, and :class:`HookRecorder`, a stand-in hook
relay that records what the Trainer calls.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .plugins import make_plugin_manager, set_plugin_manager

__all__ = ["CLIResult", "HookRecorder", "run_cli", "run_workers", "tiny_training_inputs", "apt_pm", "apt_cli",
           "tiny_checkpoint", "make_tiny_checkpoint"]


@dataclass
class CLIResult:
    """What one in-process ``apt-model`` run produced."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str) -> CLIResult:
    """Run ``apt-model ARGS`` in this process and capture its exit code and output."""
    from .cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(arg) for arg in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return CLIResult(code, out.getvalue(), err.getvalue())


class HookRecorder:
    """Stand-in for a plugin manager's ``hook`` (``Trainer(..., hook=HookRecorder())``) recording every call.

    ``calls`` lists ``(hook name, keyword arguments)`` in order; the properties pick out what tests of
    training usually compare.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def __getattr__(self, name: str):
        if not name.startswith("apt_"):
            raise AttributeError(name)
        return lambda **kwargs: self.calls.append((name, kwargs))

    def names(self) -> list[str]:
        """The hook names called, in order."""
        return [name for name, _ in self.calls]

    @property
    def step_metrics(self) -> list[dict]:
        """The metrics of every ``apt_train_step_end`` call."""
        return [kwargs["metrics"] for name, kwargs in self.calls if name == "apt_train_step_end"]

    @property
    def losses(self) -> list[float]:
        """The training loss of every step that logged one."""
        return [metrics["loss"] for metrics in self.step_metrics if "loss" in metrics]

    @property
    def final(self) -> dict:
        """The metrics of the last ``apt_train_end`` call."""
        return next(kwargs["metrics"] for name, kwargs in reversed(self.calls) if name == "apt_train_end")


def tiny_training_inputs(train_chars: int = 20_000, eval_chars: int = 3_000):
    """``(tokenizer, train tokens, eval tokens, model)`` for a small, deterministic training run: the
    byte-level tokenizer, the head of the embedded corpus's train and eval splits, and the tiny preset
    seeded with 0. Every process of a torchrun test worker builds the same ones."""
    import torch

    from .data import default_corpus_text
    from .model import APTConfig, APTModel
    from .tokenizer import APTTokenizer

    tokenizer = APTTokenizer.byte_level()
    train = torch.tensor(tokenizer.encode(default_corpus_text("train")[:train_chars]))
    evals = torch.tensor(tokenizer.encode(default_corpus_text("eval")[:eval_chars]))
    torch.manual_seed(0)
    return tokenizer, train, evals, APTModel(APTConfig.preset("tiny"))


def run_workers(script: str | Path, *args: str, nproc: int = 1, cwd: str | Path | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``script ARGS`` as one plain process (``nproc=1``) or under ``torchrun`` as *nproc* processes.

    On a machine without GPUs the trainer's processes join over gloo on the CPU. Each process uses one
    thread (they share the cores) and loads no plugins. Fails the test with the end of stderr if the
    run fails.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "APT_LOAD_PLUGINS": ""}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # an outer torchrun's variables would make a plain process join its group
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    result = subprocess.run([*launcher, str(script), *map(str, args)], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture
def apt_pm():
    """Factory for an isolated plugin manager, installed process-wide for the test's duration."""
    previous = set_plugin_manager(None)

    def make(*plugins, entry_points: bool = False, strict: bool = True, **options):
        pm = make_plugin_manager(entry_points=entry_points, plugins=plugins, strict=strict, **options)
        set_plugin_manager(pm)
        return pm

    yield make
    set_plugin_manager(previous)


@pytest.fixture
def apt_cli():
    """Run ``apt-model`` in-process: ``apt_cli("plugins", "--json").stdout``.

    Uses the manager installed by ``apt_pm`` in the same test, else one built from the environment.
    """
    previous = set_plugin_manager(None)
    yield run_cli
    set_plugin_manager(previous)


def make_tiny_checkpoint(path: Path) -> Path:
    """Write a tiny, untrained APT checkpoint (byte-level tokenizer) to *path* and return it."""
    import torch

    from .checkpoint import save_checkpoint
    from .model import APTConfig, APTModel
    from .tokenizer import APTTokenizer

    torch.manual_seed(0)
    tokenizer = APTTokenizer.byte_level()
    model = APTModel(APTConfig.preset("tiny", vocab_size=tokenizer.vocab_size))
    save_checkpoint(path, model=model, tokenizer=tokenizer)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny APT checkpoint directory shared by the test session (treat it as read-only)."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("apt") / "tiny")
