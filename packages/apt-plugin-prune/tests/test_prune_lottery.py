"""Lottery tickets: rewinding really restores θ₀ / θ_k on the surviving weights, through the core trainer."""

from __future__ import annotations

import json

import pytest
import torch
from prune_testutils import make_model

from apt_core import hookimpl
from apt_core.errors import APTError
from apt_plugin_prune.lottery import LotterySettings, rewind, run_lottery
from apt_plugin_prune.masks import MaskSet, prunable_weights


class Recorder:
    """A plugin that snapshots the weights at every trainer start and after every optimizer step."""

    def __init__(self) -> None:
        self.starts: list[dict[str, torch.Tensor]] = []
        self.steps: list[tuple[int, dict[str, torch.Tensor]]] = []

    @staticmethod
    def _snapshot(trainer) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    @hookimpl
    def apt_train_start(self, trainer):
        self.starts.append(self._snapshot(trainer))
        self.steps.append((-1, {}))  # run separator

    @hookimpl
    def apt_train_step_end(self, trainer, step):
        self.steps.append((step, self._snapshot(trainer)))

    def state_after(self, run: int, step: int) -> dict[str, torch.Tensor]:
        runs, current = [], None
        for number, state in self.steps:
            if number == -1:
                current = {}
                runs.append(current)
            else:
                current[number] = state
        return runs[run][step]


def _lottery(tmp_path, checkpoint, text, rewind_step, apt_pm, rounds=2, controls=False):
    recorder = Recorder()
    apt_pm(recorder)
    settings = LotterySettings(rounds=rounds, rate=0.3, steps=4, rewind_step=rewind_step, controls=controls,
                               batch_size=2, seq_len=32, eval_batches=2, lr=1e-2)
    report = run_lottery(checkpoint, tmp_path / "ticket", settings, data=str(text), progress=False, device="cpu")
    return recorder, report


def _check_round_starts(recorder, rewound_to, names, rounds):
    for index in range(1, rounds + 1):
        start = recorder.starts[index]
        zeros_total = 0
        for name in names:
            kept = start[name] != 0
            zeros_total += int((~kept).sum())
            torch.testing.assert_close(start[name][kept], rewound_to[name][kept], rtol=0, atol=0)
        assert zeros_total > 0
    # Everything outside the masks (norms, embedding, gate) is rewound too.
    for name, value in recorder.starts[1].items():
        if name not in names:
            torch.testing.assert_close(value, rewound_to[name], rtol=0, atol=0)


def test_rewind_to_theta_0(tmp_path, prune_checkpoint_dir, prune_text, apt_pm):
    from apt_core.model import APTModel

    theta0 = APTModel.from_pretrained(prune_checkpoint_dir).state_dict()
    recorder, report = _lottery(tmp_path, prune_checkpoint_dir, prune_text, 0, apt_pm)
    names = list(prunable_weights(APTModel.from_pretrained(prune_checkpoint_dir)))
    # Trainer runs: dense, round 1, round 2; each round starts from θ₀ with the current mask.
    assert len(recorder.starts) == 3
    _check_round_starts(recorder, theta0, names, rounds=2)
    assert [r["sparsity"] for r in report["rounds"]] == [pytest.approx(0.3, abs=1e-3), pytest.approx(0.51, abs=1e-3)]
    # Masks only grow: what round 1 pruned is still pruned at round 2's start.
    for name in names:
        assert not ((recorder.starts[1][name] == 0) & (recorder.starts[2][name] != 0)).any()


def test_rewind_to_theta_k_and_controls(tmp_path, prune_checkpoint_dir, prune_text, apt_pm):
    recorder, report = _lottery(tmp_path, prune_checkpoint_dir, prune_text, 2, apt_pm, rounds=1, controls=True)
    theta_k = recorder.state_after(run=0, step=2)  # weights after the dense run's 2nd optimizer step
    names = [n for n in theta_k if n.endswith(".weight") and n.startswith("layers.") and "norm" not in n
             and "ap_gate" not in n]
    _check_round_starts(recorder, theta_k, names, rounds=1)
    assert report["rounds"][0]["steps"] == 2  # steps - rewind_step
    for key in ("control_reinit", "control_random_mask"):
        assert report[key]["perplexity"] > 0
    # The random-mask control starts from θ_k with a different mask of the same per-tensor sparsity.
    random_start = recorder.starts[-1]
    ticket_start = recorder.starts[1]
    for name in names:
        assert int((random_start[name] == 0).sum()) == int((ticket_start[name] == 0).sum())
    assert any(not torch.equal(random_start[n] == 0, ticket_start[n] == 0) for n in names)
    saved = json.loads((tmp_path / "ticket" / "lottery_report.json").read_text())
    assert saved["ticket"].endswith("checkpoint-0000002")


def test_rewind_function_restores_exactly():
    model, other = make_model(seed=0), make_model(seed=1)
    state = {k: v.clone() for k, v in other.state_dict().items()}
    names = list(prunable_weights(model))
    masks = MaskSet({n: torch.rand(dict(model.named_parameters())[n].shape) > 0.5 for n in names})
    rewind(model, state, masks)
    params = dict(model.named_parameters())
    for name in names:
        mask = masks.masks[name]
        assert torch.equal(params[name][mask], state[name][mask])
        assert (params[name][~mask] == 0).all()


@pytest.mark.parametrize("kwargs,match", [
    ({"rounds": 0}, "--rounds"), ({"rate": 1.0}, "--rate"), ({"rate": 0.0}, "--rate"),
    ({"steps": 4, "rewind_step": 4}, "--rewind-step"), ({"scope": "x"}, "unknown scope"),
])
def test_bad_lottery_settings(kwargs, match):
    with pytest.raises(APTError, match=match):
        LotterySettings(**kwargs)
