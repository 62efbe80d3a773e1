"""End-to-end check of ``experiments/rl_reward_reshaping.py --quick``, and of its pure parts.

The quick mode (1 seed, every arm and restart cost, a tiny budget) runs once into a temporary
folder; the tests validate what it writes (the JSON's keys, every arm's run and curve, the
designer's actions, the value-iteration table, the restart cost, the Markdown tables, the
PNG). They check the pipeline, not the numbers. The workflow logic (live, restart from
scratch, restart from a checkpoint) is checked on its own with a stub designer.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "experiments" / "rl_reward_reshaping.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _script() -> Any:
    """The experiment script as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("rl_reward_reshaping", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the quick mode once for every test of this module; returns the output folder."""
    out = tmp_path_factory.mktemp("rl_quick")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
                          env=os.environ.copy(), capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "FAILED" not in proc.stdout, proc.stdout[-3000:]
    return out


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def test_json_has_every_arm_run_and_number(quick_run: Path) -> None:
    m = _script()
    data = json.loads((quick_run / "rl_reward_reshaping_quick.json").read_text())
    assert data["complete"] is True and data["command"].endswith("--quick")
    assert {key.split(" ")[0] for key in data["arms"]} == set(m.ARM_NAMES)
    budget = data["args"]["total_timesteps"]
    for key, stats in data["arms"].items():
        assert stats["n"] == data["args"]["seeds"]
        assert stats["name"].startswith(m.ARM_NAMES[key.split(" ")[0]])
        for k in ("mean", "median", "fraction_of_ceiling_mean"):
            assert _is_number(stats[k])
        assert stats["mean_ci95"][0] <= stats["mean"] <= stats["mean_ci95"][1]
    for run in data["runs"]:
        assert run["curve"] and all(p["step"] <= budget for p in run["curve"])
        assert {"arm", "seed", "layout", "final_fitness", "actions", "ceiling"} <= set(run)
        assert 0.0 <= run["final_fitness"] <= 200.0
    # the live designers acted, and the fixed arms were never changed
    live = [r for r in data["runs"] if r["arm"] in ("live_A", "live_B", "objective_A")]
    assert all(r["actions"] for r in live)
    assert not [r for r in data["runs"] if r["arm"].startswith("fixed") and r["actions"]]
    assert all(r["restarts"] == 0 for r in live)
    for key in ("scratch", "checkpoint"):
        assert all(_is_number(t) and t > 0 for t in data["restart"][key]["seconds_trials"])
    assert data["restart"]["rate"] > 0
    assert [row["cost"] for row in data["sensitivity"]] == ["measured", "0 s", "60 s"]
    free = [r for r in data["runs"] if r["cost_label"] == "0 s"]
    assert {r["arm"] for r in free} == set(m.RESTART_ARMS)
    assert all(r["cost_steps"] == 0 and "copied_from" not in r for r in free)
    for r in data["runs"]:  # a copy stands for a designer who could not afford a restart
        if "copied_from" in r:
            assert r["arm"] in m.RESTART_ARMS and r["cost_label"] != "0 s"
    for row in data["value_iteration"]:
        assert row["A"]["high"] == 0.0 and row["ceiling"] > 0
    for pair in data["paired"].values():
        assert len(pair["differences"]) == len(pair["seeds"]) and 0 <= pair["fisher_p"] <= 1


def test_markdown_names_every_arm_and_the_plot_is_a_png(quick_run: Path) -> None:
    m = _script()
    text = (quick_run / "rl_reward_reshaping_quick.md").read_text()
    for name in m.ARM_NAMES.values():
        assert f"| {name} |" in text
    assert "Fisher p" in text and "Restart-cost sensitivity" in text
    png = quick_run / "rl_reward_reshaping_quick.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5_000


class _Stub:
    """A designer that proposes one change at its second evaluation and reverts it at its
    third."""

    def __init__(self) -> None:
        self.calls = 0
        self.trial = None

    def observe(self, fitness: float, values: dict, step: int, total: int) -> Any:
        from livetune_rl.tuner import Action

        self.calls += 1
        if self.calls == 2:
            self.trial = object()
            return Action("set", {"reward.hungry_not_thirsty": 1.0}, "stub")
        if self.calls == 3:
            self.trial = None
            return Action("revert", {"reward.hungry_not_thirsty": -0.5}, "stub")
        return None


@pytest.mark.parametrize("workflow", ["live", "scratch", "checkpoint"])
def test_workflows_pay_restarts_and_apply_the_changes(workflow: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    m = _script()
    args = m.Args(quick=True)
    args.apply_quick()
    args.total_timesteps = 4 * args.eval_every + 300  # 4 evaluations, then 300 spare steps
    stub = _Stub()
    monkeypatch.setattr(m.Designer, "__init__", lambda self, *a: setattr(self, "policy", stub))
    job = {"args": m.dataclasses.asdict(args), "arm": "live_B", "seed": 0,
           "layout": m.ALL_LAYOUTS[2], "weights": m.DESIGNS["B"], "designer": "blackbox",
           "workflow": workflow, "cost_steps": 100, "cost_seconds": 0.1}
    result = m.run_job(job)
    kinds = [a["action"] for a in result["actions"]]
    assert kinds == ["set", "revert"]
    assert result["actions"][0]["weights"]["hungry_not_thirsty"] == 1.0
    assert result["final_weights"] == m.DESIGNS["B"]
    paid = 0 if workflow == "live" else 2 * 100
    assert result["restarts"] == (0 if workflow == "live" else 2)
    steps = [p["step"] for p in result["curve"]]
    assert steps[-1] == result["budget_used"] <= args.total_timesteps
    assert steps[2] - steps[1] == args.eval_every + paid // 2  # the set's restart is paid
    trained = [p["trained"] for p in result["curve"]]
    if workflow == "scratch":  # the proposal is a fresh run, the revert resumes the paused one
        assert trained[2] == args.eval_every and trained[3] == 3 * args.eval_every
    else:
        assert trained == sorted(trained) and trained[-1] == len(trained) * args.eval_every


def test_layouts_are_drawn_apart_from_the_seeds_and_skip_the_held_out_ones() -> None:
    m = _script()
    args = m.Args(seeds=10)
    drawn = m.layouts_for(args)
    assert [s for s, _ in drawn] == list(range(m.REPORTED_SEED0, m.REPORTED_SEED0 + 10))
    layouts = [lay for _, lay in drawn]
    assert len(set(layouts)) >= 6 and not set(layouts) & set(m.HELD_OUT_LAYOUTS)
    pilot = m.layouts_for(m.Args(seeds=2, pilot=True))
    assert {lay for _, lay in pilot} <= set(m.HELD_OUT_LAYOUTS)


def test_bootstrap_interval_and_first_reaching() -> None:
    m = _script()
    low, high = m.bootstrap([1.0, 2.0, 3.0, 4.0])
    assert 1.0 <= low <= 2.5 <= high <= 4.0
    assert m.bootstrap([5.0, 5.0]) == (5.0, 5.0)
    curve = [{"step": 10, "fitness": 1.0}, {"step": 20, "fitness": 6.0}]
    assert m.first_reaching(curve, 5.0) == 20 and m.first_reaching(curve, 7.0) is None
