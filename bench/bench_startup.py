"""Start-up cost of ``apt-model --help`` / ``apt-model plugins`` and per-step cost of the training hooks.

    python bench/bench_startup.py           # with every plugin installed (./dev bench bench_startup)

Compares against ``python -c pass`` in the same run; checks that torch is never imported.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import save, table

RUNS = 15


def wall(args: list[str]) -> float:
    """Median wall time of running *args* RUNS times (after one warm-up run)."""
    subprocess.run(args, capture_output=True, check=True)
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(args, capture_output=True, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def torch_imported(cli_args: list[str]) -> bool:
    code = ("import sys\nfrom apt_core.cli import main\n"
            f"try:\n    main({cli_args!r})\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1] == "True"


def hook_overhead(calls: int = 20000) -> dict:
    """Cost of firing the per-step training hook through every installed plugin."""
    from apt_core.plugins import get_plugin_manager, plugin_infos

    pm = get_plugin_manager()
    active = [i.name for i in plugin_infos(pm) if i.status in ("active", "builtin")]
    metrics = {"loss": 1.0}
    start = time.perf_counter()
    for step in range(calls):
        pm.hook.apt_train_step_end(trainer=None, step=step, metrics=metrics)
    per_call = (time.perf_counter() - start) / calls
    impls = len(pm.hook.apt_train_step_end.get_hookimpls())
    return {"plugins": active, "step_end_implementations": impls, "step_end_us": round(per_call * 1e6, 2)}


def main() -> None:
    from apt_core.plugins import get_plugin_manager, plugin_infos

    plugins = [i.name for i in plugin_infos(get_plugin_manager()) if i.status == "active"]
    baseline = wall([sys.executable, "-c", "pass"])
    rows = [{"command": "python -c pass", "seconds": f"{baseline:.3f}", "over baseline": "-", "torch imported": "-"}]
    results = {"plugins_active": plugins, "runs": RUNS, "python_c_pass_s": baseline, "commands": {}}
    # The console script users run (python -m apt_core would add runpy's import time).
    script = Path(sys.executable).with_name("apt-model")
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "apt_core"]
    for args in (["--help"], ["plugins"], ["plugins", "--json", "--all"]):
        seconds = wall([*launcher, *args])
        imported = torch_imported(args)
        name = "apt-model " + " ".join(args)
        results["commands"][name] = {"seconds": seconds, "torch_imported": imported}
        rows.append({"command": name, "seconds": f"{seconds:.3f}", "over baseline": f"{seconds - baseline:.3f}",
                     "torch imported": str(imported)})
    results["hooks"] = hook_overhead()
    path = save("startup", results)
    print(f"active plugins: {', '.join(plugins) or 'none'}; median of {RUNS} runs")
    print(f"apt_train_step_end through {results['hooks']['step_end_implementations']} implementations: "
          f"{results['hooks']['step_end_us']} µs per step")
    print(f"saved {path}")
    print(table(rows, ["command", "seconds", "over baseline", "torch imported"]))


if __name__ == "__main__":
    main()
