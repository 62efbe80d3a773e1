"""SB3 knobs as a user sees them on a real model: each knob reaches every place SB3 reads it
from (every param group of every optimizer for the learning rate)."""

from __future__ import annotations

from typing import Any

import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

import livetune_rl as lt
from livetune_rl.sb3 import LiveTuneCallback, knobs_for, optimizers


def two_group_ppo() -> PPO:
    """A PPO whose optimizer has one param group for the actor and one for the critic (what a
    user who gives the two heads different settings builds)."""
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, n_epochs=1, seed=0,
                device="cpu")
    policy = model.policy
    critic = [p for n, p in policy.named_parameters() if "value" in n]
    actor = [p for n, p in policy.named_parameters() if "value" not in n]
    policy.optimizer = th.optim.Adam([{"params": actor}, {"params": critic, "lr": 1e-3}],
                                     lr=3e-4)
    return model


def learning_rates(model: Any) -> list[float]:
    return [g["lr"] for opt in optimizers(model) for g in opt.param_groups]


def test_learning_rate_knob_writes_every_param_group() -> None:
    model = two_group_ppo()
    assert learning_rates(model) == [3e-4, 1e-3]
    [knob] = [k for k in knobs_for(model) if k.name == "learning_rate"]
    knob.apply(model, 5e-5)
    assert learning_rates(model) == [5e-5, 5e-5]
    assert model.lr_schedule(1.0) == model.lr_schedule(0.0) == 5e-5  # train() keeps it


class LrProbe(BaseCallback):
    """Records the optimizer's learning rates at each rollout end (after LiveTuneCallback
    applied its knobs there, before train() runs)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[float]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.seen.append(learning_rates(self.model))


def test_live_learning_rate_reaches_every_param_group_at_the_rollout_end() -> None:
    registry = lt.Registry()
    model = two_group_ppo()
    live = LiveTuneCallback(registry, knobs=["learning_rate"])
    live.attach(model)
    assert registry.variable("learning_rate").value == pytest.approx(3e-4)
    registry.set({"learning_rate": 2e-5})
    probe = LrProbe()
    model.learn(16, callback=CallbackList([live, probe]))
    assert probe.seen == [[2e-5, 2e-5]]
    assert learning_rates(model) == [2e-5, 2e-5]
    assert not registry.variable("learning_rate").pending
