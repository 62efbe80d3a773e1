"""End-to-end check of ``experiments/rl_reward_reshaping.py --quick``.

Runs the quick mode (2 seeds x 4 arms, a tiny budget, the live arm's tuner as a separate
``livetune tune`` process talking gRPC) into a temporary folder and validates what it writes:
the JSON's keys and types, the Markdown table's rows, the PNG, and a live journal whose reward
changes came from the tuner over gRPC. It checks the pipeline, not the ratios.
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
ARMS = ("fixed", "restart", "live", "oracle")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the quick mode once for every test of this module; returns the output folder."""
    out = tmp_path_factory.mktemp("rl_quick")
    env = {**os.environ, "LIVETUNE_HOME": str(out / "livetune-home")}
    for name in ("LIVETUNE_ADDR", "LIVETUNE_TOKEN", "LIVETUNE_CACERT"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def test_json_has_every_number(quick_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVETUNE_HOME", str(quick_run / "livetune-home"))
    data = json.loads((quick_run / "rl_reward_reshaping_quick.json").read_text())
    for key in ("args", "algorithm", "fixed_reward", "restart", "final_fitness", "ratios",
                "threshold", "curves", "tuner", "runs", "wall_seconds_total", "command"):
        assert key in data, key
    assert data["args"]["quick"] is True and data["command"].endswith("--quick")
    seeds = data["args"]["seeds"]
    for arm in (*ARMS, "aligned"):
        final = data["final_fitness"][arm]
        assert final["n"] == seeds and len(final["values"]) == seeds
        for k in ("mean", "low", "high"):
            assert _is_number(final[k]) and 0.0 <= final["mean"] <= 200.0
        assert final["low"] <= final["mean"] <= final["high"]
        assert data["curves"][arm], arm
        for point in data["curves"][arm]:
            assert _is_number(point["step"]) and _is_number(point["mean"])
        assert len(data["runs"][arm]) == seeds
        assert {"reached", "of", "steps_mean", "wall_mean"} <= set(data["threshold"][arm])
    for k in ("live_over_fixed", "live_over_restart", "live_fraction_of_oracle", "floor"):
        assert _is_number(data["ratios"][k]), k
    assert data["ratios"]["floor"] > 0
    assert all(_is_number(t) and t > 0 for t in data["restart"]["seconds_trials"])
    for run in data["runs"]["live"] + data["runs"]["fixed"] + data["runs"]["oracle"]:
        assert run["steps"] >= data["args"]["total_timesteps"]
        assert _is_number(run["steps_per_second"]) and run["steps_per_second"] > 0
        assert set(run["final_weights"]) == set(data["fixed_reward"])


def test_markdown_table_has_four_arms(quick_run: Path) -> None:
    text = (quick_run / "rl_reward_reshaping_quick.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    names = [row.split("|")[1].strip() for row in rows[1:]]
    assert names == [*ARMS, "aligned (reference, not an arm)"]
    assert "live/fixed" in text and "fraction of oracle" in text


def test_plot_is_a_png(quick_run: Path) -> None:
    png = quick_run / "rl_reward_reshaping_quick.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert png.stat().st_size > 5_000


def test_live_journal_records_tuner_sets_over_grpc(quick_run: Path) -> None:
    journals = quick_run / "rl_reward_reshaping_quick_journals"
    records = [json.loads(line) for line in
               (journals / "live_seed0.jsonl").read_text().splitlines() if line.strip()]
    sets = [r for r in records if r["kind"] == "set" and r["name"].startswith("reward.")]
    assert sets, "the tuner made no change in the quick run"
    for record in sets:  # a gRPC peer address, not a local set in the training process
        assert "ipv4:127.0.0.1:" in record["source"] or "ipv6:" in record["source"], record
    evaluations = [r for r in records if r["kind"] == "event" and r["name"] == "evaluate"]
    assert evaluations and all("mean_fitness" in r["data"] for r in evaluations)
    decisions = [json.loads(line) for line in
                 (journals / "live_seed0_tuner.jsonl").read_text().splitlines()]
    assert any(d.get("action") == "set" for d in decisions)
    fixed = [json.loads(line) for line in
             (journals / "fixed_seed0.jsonl").read_text().splitlines() if line.strip()]
    assert not [r for r in fixed if r["kind"] == "set"], "the fixed arm must not be tuned"


def _script() -> Any:
    """The experiment script as a module (its analysis helpers are pure functions)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("rl_reward_reshaping", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_restart_arm_is_assembled_from_fixed_and_oracle() -> None:
    """A kept tuner move, then an unjudged last trial: the corrected reward keeps the first
    and drops the second; the restart arm is the fixed run up to the kept move, then the
    oracle run shifted by the steps spent and the restart cost."""
    m = _script()
    start = dict(m.FIXED_REWARD)
    kept = {**start, "not_hungry_thirsty": 0.0}
    curve = [{"step": s, "wall": s / 1000, "fitness": f}
             for s, f in [(1000, 0.0), (2000, 0.0), (3000, 4.0), (4000, 9.0), (5000, 9.0)]]
    live = {
        "weights": start, "steps_per_second": 1000.0, "curve": curve,
        "reward_sets": [
            {"step": 2000, "name": "reward.not_hungry_thirsty", "new": 0.0},
            {"step": 5000, "name": "reward.hungry_thirsty", "new": -0.5},
        ],
        "tuner_decisions": [{"step": 2000, "action": "set"}, {"step": 5000, "action": "set"}],
    }
    weights, step = m.corrected_reward(live, settle=2)
    assert weights == kept and step == 2000
    live["corrected_weights"], live["corrected_step"] = weights, step
    assert m.restart_snapshot_step(live, 1.5, budget=6000) == 6000 - 2000 - 1500
    fixed = {"seed": 0, "curve": [*curve[:2], {"step": 3000, "wall": 3.0, "fitness": 0.0}],
             "steps_per_second": 1000.0}
    oracle = {"weights": kept, "curve": [{"step": 1000, "wall": 1.0, "fitness": 7.0}],
              "snapshot": {"step": 2500, "wall": 2.5, "fitness": 8.0}}
    restart = m.restart_result(fixed, live, oracle, 1.5, budget=6000)
    assert restart["restart_step"] == 2000 and restart["restart_cost_steps"] == 1500
    assert restart["final_fitness"] == 8.0
    assert [p["step"] for p in restart["curve"]] == [1000, 2000, 1000 + 3500]
    assert restart["wall"] == 2.0 + 1.5 + 2.5
    nothing = {**live, "reward_sets": [], "tuner_decisions": []}
    assert m.corrected_reward(nothing, settle=2) == (start, None)
