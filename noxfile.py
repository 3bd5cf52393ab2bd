"""Every task a developer or CI runs: ``nox -l`` lists them, ``./dev SESSION`` bootstraps nox itself.

torch is pinned to the CPU build that installs from local disk in seconds (a plain ``torch``
requirement would pull a multi-GB CUDA build); GPU machines install their own torch first.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests", "isolation"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
TORCH = os.environ.get("APT_TORCH_REQUIREMENT", "torch==2.13.0")
PLUGINS = ["hf", "cloud", "distill", "prune"]
FIXTURE_PLUGINS = sorted(str(p) for p in (ROOT / "tests" / "fixture_plugins").iterdir() if p.is_dir())
# Which SDKs each plugin may pull in; isolation checks that no other plugin's SDK is importable.
PLUGIN_SDKS = {
    "hf": ["transformers", "datasets"],
    "cloud": ["boto3", "oss2", "modelscope"],
    "distill": [],
    "prune": ["torch_pruning"],
}


def package(name: str, extras: str = "test") -> str:
    return f"{ROOT / 'packages' / name}[{extras}]"


def install_all(session: nox.Session) -> None:
    session.install(TORCH)
    session.install(package("apt-core"), *(package(f"apt-plugin-{p}") for p in PLUGINS))


@nox.session
def tests(session: nox.Session) -> None:
    """All packages installed together, plus the fixture third-party plugins: the CI entry point."""
    install_all(session)
    session.install("--no-deps", *FIXTURE_PLUGINS)
    session.run("pytest", "packages", "tests", *session.posargs)


@nox.session
@nox.parametrize("plugin", [None, *PLUGINS], ids=["core", *PLUGINS])
def isolation(session: nox.Session, plugin: str | None) -> None:
    """One venv per package: core alone, and core + one plugin without the other plugins' dependencies."""
    session.install(TORCH)
    session.install(package("apt-core"))
    targets = ["packages/apt-core/tests"]
    if plugin:  # the core's own tests already ran alone in isolation(core)
        session.install(package(f"apt-plugin-{plugin}"))
        targets = [f"packages/apt-plugin-{plugin}/tests"]
    foreign = [sdk for name, sdks in PLUGIN_SDKS.items() if name != plugin for sdk in sdks]
    foreign = [sdk for sdk in foreign if sdk not in PLUGIN_SDKS.get(plugin or "", [])]
    session.run("python", "-c", (
        "import importlib.util, sys; "
        f"leaked = [m for m in {foreign!r} if importlib.util.find_spec(m)]; "
        "sys.exit(f'other plugins dependencies installed: {leaked}' if leaked else 0)"
    ))
    session.run("pytest", *targets, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: train on the embedded corpus, then export, back up, distill and prune the result."""
    import shutil

    install_all(session)
    out = ROOT / "runs" / "demo"
    shutil.rmtree(out, ignore_errors=True)  # each demo is a fresh run
    model, store = str(out / "model"), (out / "backups").as_uri()

    def apt(*args: str) -> None:
        session.run("apt-model", *args)

    apt("plugins")
    apt("train", "--out", model, *session.posargs)                      # core: train, sample, evaluate
    apt("generate", model, "ROMEO:", "--max-new-tokens", "120")
    apt("eval", model)
    apt("info", model)
    apt("hf", "export", model, str(out / "hf"))                         # hf: transformers-loadable folder
    apt("hf", "check", str(out / "hf"), "--checkpoint", model)          #     AutoModelForCausalLM == APT
    apt("backup", model, store, "--name", "demo")                       # cloud: verified snapshot
    apt("backup", model, store, "--name", "demo-again")                 #        unchanged: 0 bytes uploaded
    apt("restore", store, "demo", str(out / "restored"))
    apt("backups", "verify", store)
    apt("distill", "--teacher", model, "--student-from-teacher", "0,2",  # distill: half-depth student
        "--steps", "200", "--out", str(out / "distilled"))
    apt("prune", model, "--structured", "heads,ffn", "--sparsity", "0.5",  # prune: physically smaller
        "--method", "taylor", "--scope", "global",                         #   (the benchmark's best recipe)
        "--finetune-steps", "200", "--out", str(out / "pruned"))
    apt("prune", "stats", str(out / "pruned"))
    apt("eval", str(out / "pruned"))


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (not run in CI): each prints a table and writes bench/results/<name>.json."""
    install_all(session)
    for script in sorted((ROOT / "bench").glob("bench_*.py")):
        if not session.posargs or script.stem in session.posargs:
            session.run("python", str(script))
