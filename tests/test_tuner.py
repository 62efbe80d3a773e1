"""The automated tuner: its decision rule, and a run tuned end to end over gRPC."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import livetune_rl as lt
from livetune_rl.tuner import HillClimbPolicy, PolicyConfig


def fitness(values: dict) -> float:
    """A stand-in for training: fitness appears only once eating is rewarded enough."""
    return 150.0 if values["reward.food"] > 0.4 else 0.0


def registry_with_weights() -> lt.Registry:
    reg = lt.Registry()
    lt.LiveVariable("reward.food", 0.0, min=-1.0, max=1.0, registry=reg)
    lt.LiveVariable("reward.water", 0.0, min=-1.0, max=1.0, registry=reg)
    lt.LiveVariable("learning_rate", 3e-4, min=1e-6, max=1.0, registry=reg)
    lt.LiveVariable("mode", "a", choices=["a", "b"], registry=reg)
    return reg


def test_policy_only_tunes_matching_bounded_numbers() -> None:
    reg = registry_with_weights()
    policy = HillClimbPolicy(PolicyConfig(knobs=("reward.*", "mode")), reg.state().variables)
    assert set(policy.tunables) == {"reward.food", "reward.water"}
    policy = HillClimbPolicy(PolicyConfig(knobs=("learning_rate",)), reg.state().variables)
    assert policy.tunables["learning_rate"].log  # 6 decades: moves are multiplicative


def test_policy_climbs_to_a_working_reward_and_reverts_failures() -> None:
    reg = registry_with_weights()
    policy = HillClimbPolicy(PolicyConfig(patience=1, settle=1, step=0.25, seed=3),
                             reg.state().variables)
    values = reg.values()
    kinds = []
    for _ in range(40):
        action = policy.observe(fitness(values), values)
        if action is not None:
            kinds.append(action.kind)
            values.update(action.values)
            assert all(-1.0 <= v <= 1.0 for k, v in values.items() if k.startswith("reward"))
    assert values["reward.food"] > 0.4
    assert fitness(values) == 150.0
    assert kinds.count("set") >= 1
    # once the target is met the policy stops acting
    assert policy.observe(150.0, values) is None and policy.observe(150.0, values) is None


def test_policy_respects_target_and_max_actions() -> None:
    reg = registry_with_weights()
    policy = HillClimbPolicy(PolicyConfig(patience=1, settle=1, target=0.0),
                             reg.state().variables)
    values = reg.values()
    assert all(policy.observe(0.0, values) is None for _ in range(5))
    policy = HillClimbPolicy(PolicyConfig(patience=1, settle=1, max_actions=2),
                             reg.state().variables)
    actions = [a for a in (policy.observe(0.0, values) for _ in range(20)) if a is not None]
    assert len(actions) == 2


def test_tuner_process_tunes_a_live_run_through_the_public_api(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.setenv("LIVETUNE_HOME", str(tmp_path / "home"))
    reg = registry_with_weights()
    server = lt.serve("127.0.0.1:0", registry=reg, journal=tmp_path / "journal.jsonl",
                      run="tuned", quiet=True)
    stop = threading.Event()

    def training() -> None:  # reports evaluations like LiveTuneCallback does
        step = 0
        while not stop.is_set():
            step += 1000
            reg.step = step
            reg.record_event("evaluate", {"mean_fitness": fitness(reg.values())}, step=step)
            time.sleep(0.1)

    thread = threading.Thread(target=training, daemon=True)
    thread.start()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "livetune_rl.cli", "tune", "--addr", server.address,
             "--patience", "1", "--settle", "1", "--seconds", "6", "--target", "100",
             "--log", str(tmp_path / "tuner.jsonl")],
            capture_output=True, text=True, timeout=60, env=os.environ.copy())
    finally:
        stop.set()
        thread.join()
        server.stop(grace=0)
    assert out.returncode == 0, out.stderr
    assert reg.variable("reward.food").value > 0.4, out.stdout
    sets = [e for e in lt.read_journal(tmp_path / "journal.jsonl") if e.kind == "set"]
    assert sets and all("ipv4:127.0.0.1" in e.source for e in sets)  # came over gRPC
    assert all(e.source.startswith("livetune-tune ") for e in sets)  # and says who it was
    assert (tmp_path / "tuner.jsonl").read_text().count('"action"') == len(sets)
    assert "changes made" in out.stdout
