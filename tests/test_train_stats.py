"""SB3's update statistics reach clients as ``train`` events (the panel draws them)."""

from __future__ import annotations

import itertools
from pathlib import Path

import gymnasium as gym
from stable_baselines3 import DQN, PPO

import livetune_rl as lt
from livetune_rl.journal import read_journal
from livetune_rl.sb3 import LiveTuneCallback, TrainStatsCallback


def test_ppo_publishes_its_losses_after_each_update_phase(tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "journal.jsonl")
    model = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=64, batch_size=32, n_epochs=1,
                seed=0, device="cpu")
    model.learn(320, callback=LiveTuneCallback(registry, serve=False, train_stats_every=0))
    events = [e for e in read_journal(tmp_path / "journal.jsonl")
              if e.kind == "event" and e.name == "train"]
    # 5 rollouts of 64 steps: the updates after rollouts 1-4 are read when the next starts
    assert [e.step for e in events] == [64, 128, 192, 256]
    assert [e.data["n_updates"] for e in events] == [1, 2, 3, 4]
    assert {"loss", "value_loss", "entropy_loss", "learning_rate"} <= set(events[0].data)
    assert all(isinstance(v, float) for e in events for v in e.data.values())


def test_at_most_one_event_per_every_steps(tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "journal.jsonl")
    model = DQN("MlpPolicy", gym.make("CartPole-v1"), learning_starts=50, train_freq=4,
                seed=0, device="cpu")
    model.learn(600, callback=TrainStatsCallback(registry, every=200))
    steps = [e.step for e in read_journal(tmp_path / "journal.jsonl")
             if e.kind == "event" and e.name == "train"]
    assert len(steps) >= 2 and all(b - a >= 200 for a, b in itertools.pairwise(steps))
    assert all(s is not None and s > 50 for s in steps)  # nothing before training started
