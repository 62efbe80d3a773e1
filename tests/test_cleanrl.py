"""Gymnasium vector envs with live reward weights, and the CleanRL-style loop of docs/cleanrl.md.

``LiveVectorReward`` must switch every sub-env at one global step, through the vector env's
own ``call`` (also across ``AsyncVectorEnv``'s worker processes), refuse sub-envs it cannot
own, and journal what it applied. The single-file PPO of docs/cleanrl.md is run as the
docs show it (the block itself, with a small budget), and changed while it runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import livetune_rl as lt
import livetune_rl.envs
from livetune_rl import Registry
from livetune_rl.journal import read_journal
from livetune_rl.vector import LiveVectorReward
from livetune_rl.wrappers import LiveRewardWrapper

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = {"hungry_thirsty": -1.0, "hungry_not_thirsty": -1.0,
           "not_hungry_thirsty": 1.0, "not_hungry_not_thirsty": 1.0}


def _make(weights: dict[str, float] = WEIGHTS, **kwargs: object):
    def thunk() -> gym.Env:
        env = LiveRewardWrapper(gym.make("livetune/HungryThirsty-v0", layout_seed=0), weights,
                                **kwargs)  # type: ignore[arg-type]
        return gym.wrappers.RecordEpisodeStatistics(env)  # the wrapper need not be outermost
    return thunk


@pytest.mark.parametrize("vector", [gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv])
def test_a_change_reaches_every_sub_env_at_one_step(vector: type, tmp_path: Path) -> None:
    reg = Registry()
    reg.attach_journal(tmp_path / "journal.jsonl")
    envs = LiveVectorReward(vector([_make()] * 3), registry=reg)
    try:
        envs.reset(seed=0)
        actions = np.zeros(3, dtype=np.int64)
        for _ in range(5):
            _, _, _, _, infos = envs.step(actions)
        # gymnasium merges the sub-envs' infos: one array per key, one entry per sub-env
        assert list(infos["reward_weights"]["hungry_thirsty"]) == [-1.0] * 3
        reg.set({"reward.hungry_thirsty": -0.25, "reward.scale": 2.0}, source="test")
        _, _, _, _, infos = envs.step(actions)
        assert list(infos["reward_weights"]["hungry_thirsty"]) == [-0.25] * 3
        assert list(infos["reward_scale"]) == [2.0] * 3
        applied = [e for e in read_journal(tmp_path / "journal.jsonl") if e.kind == "applied"]
        assert {e.name for e in applied} == {"reward.hungry_thirsty", "reward.scale"}
        assert {e.step for e in applied} == {15}  # 5 steps of 3 sub-envs before the change
        assert envs.reward_weights()["hungry_thirsty"] == -0.25
    finally:
        envs.close()
    assert "reward.hungry_thirsty" not in reg  # close unregisters: a new loop can register


def test_the_reward_really_changes() -> None:
    reg = Registry()
    envs = LiveVectorReward(gym.vector.SyncVectorEnv([_make()] * 2), registry=reg)
    envs.reset(seed=0)
    actions = np.zeros(2, dtype=np.int64)
    _, before, _, _, infos = envs.step(actions)
    parts = infos["reward_components"]
    assert list(before) == list(sum(WEIGHTS[c] * parts[c] for c in WEIGHTS))
    reg.set({f"reward.{c}": 0.5 for c in WEIGHTS} | {"reward.scale": 2.0})
    _, after, _, _, _ = envs.step(actions)
    assert list(after) == [1.0, 1.0]  # the components are a one-hot of the state
    envs.close()


def test_values_already_in_the_registry_are_pushed() -> None:
    reg = Registry()
    lt.LiveVariable("reward.hungry_thirsty", -0.5, min=-10.0, max=10.0, registry=reg)
    envs = LiveVectorReward(gym.vector.SyncVectorEnv([_make()] * 2), registry=reg)
    assert [w["hungry_thirsty"] for w in envs.unwrapped.call("reward_weights")] == [-0.5, -0.5]
    envs.close()


def test_sub_envs_it_cannot_own_are_refused() -> None:
    reg = Registry()
    live = gym.vector.SyncVectorEnv([_make(registry=Registry())])
    with pytest.raises(ValueError, match="without registry"):
        LiveVectorReward(live, registry=reg)
    mixed = gym.vector.SyncVectorEnv([_make(), _make({"hungry_thirsty": 1.0})])
    with pytest.raises(ValueError, match="same components"):
        LiveVectorReward(mixed, registry=reg)
    assert reg.names() == []


def _block() -> tuple[str, list[str]]:
    """The python block of docs/cleanrl.md and the arguments its test-args comment gives."""
    text = (REPO / "docs" / "cleanrl.md").read_text()
    match = re.search(r"<!-- test-args: (.*?) -->\n```python\n(.*?)^```", text,
                      re.MULTILINE | re.DOTALL)
    assert match is not None, "docs/cleanrl.md lost its python block or its test-args comment"
    return match.group(2), match.group(1).split()


def test_the_documented_loop_takes_changes_while_it_runs(tmp_path: Path,
                                                         sub_env: dict[str, str]) -> None:
    code, _ = _block()
    script = tmp_path / "ppo_live.py"
    script.write_text(code)
    proc = subprocess.Popen(
        [sys.executable, str(script), "--total-timesteps", "8192", "--num-steps", "128",
         "--run-name", "cleanrl-test"], cwd=tmp_path, env=sub_env | {"OMP_NUM_THREADS": "1"},
        text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the run never became reachable"
            try:
                with lt.connect(run="cleanrl-test") as client:
                    journal = client.list().journal
                    client.set({"learning_rate": 1e-4, "ent_coef": 0.05,
                                "reward.hungry_not_thirsty": -0.5,
                                "reward.hungry_thirsty": -2.0})
                break
            except lt.LiveTuneError:
                time.sleep(0.2)
        out = proc.communicate(timeout=240)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert "done: 8192 steps" in out
    assert re.search(r"step \d+: learning_rate = 0.0001", out), out[-2000:]
    applied = {e.name: e for e in read_journal(journal) if e.kind == "applied"}
    assert set(applied) >= {"learning_rate", "ent_coef", "reward.hungry_not_thirsty",
                            "reward.hungry_thirsty"}
    # the two reward weights of one set reach every sub-env at one global step
    assert applied["reward.hungry_not_thirsty"].step == applied["reward.hungry_thirsty"].step
    assert applied["learning_rate"].new == 1e-4

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = EventAccumulator(str(tmp_path / "runs" / "cleanrl-test"))
    logs.Reload()
    lr = [s.value for s in logs.Scalars("charts/learning_rate")]
    weight = [s.value for s in logs.Scalars("reward/hungry_thirsty")]
    assert lr[-1] == pytest.approx(1e-4, rel=1e-6) and weight[-1] == -2.0


def test_the_documented_loop_has_help_for_every_argument(tmp_path: Path) -> None:
    code, args = _block()
    script = tmp_path / "ppo_live.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, COLUMNS="200")).stdout
    for flag in ("--total-timesteps", "--learning-rate", "--ent-coef", "--num-steps"):
        line = next(x for x in out.splitlines() if flag in x)
        assert "(default:" in line, line
    assert args[0] == "--total-timesteps"
