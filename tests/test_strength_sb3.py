"""SB3 knobs as a user sees them on a real model: each knob reaches every place SB3 reads it
from (every param group of every optimizer for the learning rate)."""

from __future__ import annotations

from typing import Any

import pytest
import torch as th
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

import livetune_rl as lt
from livetune_rl.sb3 import KNOBS, LiveTuneCallback, knobs_for, optimizers


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


def knob_names(model: Any) -> set[str]:
    return {k.name for k in knobs_for(model)}


def knob(model: Any, name: str) -> Any:
    [found] = [k for k in knobs_for(model) if k.name == name]
    return found


def small(algo: Any, env: str, **kwargs: Any) -> Any:
    if algo is not PPO and algo is not A2C:
        kwargs.setdefault("buffer_size", 300)
        kwargs.setdefault("learning_starts", 0)
    return algo("MlpPolicy", env, device="cpu", seed=0, **kwargs)


def test_each_algorithm_gets_exactly_the_knobs_it_has() -> None:
    common = {"learning_rate", "gamma"}
    on_policy = common | {"gae_lambda", "ent_coef", "vf_coef", "max_grad_norm"}
    off_policy = common | {"batch_size", "tau", "gradient_steps"}
    assert knob_names(small(PPO, "CartPole-v1", n_steps=32, batch_size=16)) == on_policy | {
        "clip_range", "n_epochs", "batch_size", "target_kl"}
    assert knob_names(small(A2C, "CartPole-v1")) == on_policy
    assert knob_names(small(DQN, "CartPole-v1")) == off_policy | {"exploration_rate",
                                                                  "max_grad_norm"}
    assert knob_names(small(SAC, "Pendulum-v1")) == off_policy | {"target_entropy"}
    assert knob_names(small(SAC, "Pendulum-v1", ent_coef=0.2)) == off_policy | {"ent_coef"}
    assert knob_names(small(TD3, "Pendulum-v1")) == off_policy
    assert knob_names(small(PPO, "CartPole-v1", n_steps=32, batch_size=16,
                            ent_coef="auto")) >= {"clip_range"}  # SB3 may refuse later


def test_ppo_knobs_read_and_reach_what_ppo_uses() -> None:
    model = small(PPO, "CartPole-v1", n_steps=32, batch_size=16, n_epochs=3, ent_coef=0.01,
                  vf_coef=0.4, max_grad_norm=0.6, gamma=0.95, gae_lambda=0.9, clip_range=0.25,
                  learning_rate=2e-4)
    values = {k.name: k.get(model) for k in knobs_for(model)}
    assert values == {"learning_rate": 2e-4, "ent_coef": 0.01, "clip_range": 0.25,
                      "gamma": 0.95, "gae_lambda": 0.9, "n_epochs": 3, "batch_size": 16,
                      "vf_coef": 0.4, "max_grad_norm": 0.6, "target_kl": 0.0}
    assert type(values["n_epochs"]) is int and type(values["batch_size"]) is int
    new = {"ent_coef": 0.02, "clip_range": 0.1, "gamma": 0.9, "gae_lambda": 0.8,
           "n_epochs": 2.0, "batch_size": 8.0, "vf_coef": 0.3, "max_grad_norm": 0.7,
           "target_kl": 0.05}
    for name, value in new.items():
        knob(model, name).apply(model, value)
    assert (model.ent_coef, model.gamma, model.gae_lambda, model.vf_coef,
            model.max_grad_norm, model.target_kl) == (0.02, 0.9, 0.8, 0.3, 0.7, 0.05)
    assert (model.rollout_buffer.gamma, model.rollout_buffer.gae_lambda) == (0.9, 0.8)
    assert model.clip_range(1.0) == model.clip_range(0.0) == 0.1
    assert (model.n_epochs, model.batch_size) == (2, 8)
    assert type(model.n_epochs) is int and type(model.batch_size) is int
    knob(model, "target_kl").apply(model, 0.0)
    assert model.target_kl is None and knob(model, "target_kl").get(model) == 0.0


def test_rules_refuse_what_the_algorithm_cannot_take() -> None:
    ppo = small(PPO, "CartPole-v1", n_steps=32, batch_size=16)
    batch = knob(ppo, "batch_size").check(ppo)
    assert batch(32) is None and batch(33) == "larger than the rollout (n_steps x n_envs = 32)"
    clip = knob(ppo, "clip_range").check(ppo)
    assert clip(0.0) == "must be > 0" and clip(0.1) is None
    assert knob(ppo, "learning_rate").check(ppo) is None
    dqn = small(DQN, "CartPole-v1")
    batch = knob(dqn, "batch_size").check(dqn)
    assert batch(300) is None and batch(301) == "larger than the buffer (300)"
    steps = knob(dqn, "gradient_steps").check(dqn)
    assert steps(0) == "0 would never train" and steps(-1) is None and steps(4) is None
    bounds = {k.name: (k.min, k.max) for k in KNOBS}
    assert bounds["gamma"] == (0.0, 1.0) and bounds["learning_rate"] == (0.0, 10.0)
    assert bounds["gradient_steps"] == (-1, 100_000) and bounds["n_epochs"] == (1, 1000)


def test_off_policy_knobs_reach_what_sb3_uses() -> None:
    dqn = small(DQN, "CartPole-v1", exploration_initial_eps=0.9, tau=0.5, gradient_steps=2)
    knob(dqn, "exploration_rate").apply(dqn, 0.3)
    assert dqn.exploration_rate == 0.3 and dqn.exploration_schedule(0.0) == 0.3
    assert knob(dqn, "exploration_rate").get(dqn) == 0.3
    assert (knob(dqn, "tau").get(dqn), knob(dqn, "gradient_steps").get(dqn)) == (0.5, 2)
    knob(dqn, "tau").apply(dqn, 0.1)
    knob(dqn, "gradient_steps").apply(dqn, 3.0)
    knob(dqn, "gamma").apply(dqn, 0.5)  # no rollout buffer: only the model's
    assert (dqn.tau, dqn.gradient_steps, dqn.gamma) == (0.1, 3, 0.5)
    sac = small(SAC, "Pendulum-v1", ent_coef=0.2)
    assert knob(sac, "ent_coef").get(sac) == 0.2
    knob(sac, "ent_coef").apply(sac, 0.05)
    assert sac.ent_coef == 0.05 and float(sac.ent_coef_tensor) == pytest.approx(0.05)
    auto = small(SAC, "Pendulum-v1")
    assert knob(auto, "target_entropy").get(auto) == -1.0  # -dim(action) for Pendulum
    knob(auto, "target_entropy").apply(auto, -3.0)
    assert auto.target_entropy == -3.0


def test_learning_rate_reaches_every_optimizer_of_every_algorithm() -> None:
    for model in (small(SAC, "Pendulum-v1"), small(TD3, "Pendulum-v1"),
                  small(DQN, "CartPole-v1")):
        assert knob(model, "learning_rate").get(model) == pytest.approx(model.learning_rate)
        knob(model, "learning_rate").apply(model, 0.0123)
        assert set(learning_rates(model)) == {0.0123} and model.learning_rate == 0.0123
        assert model.lr_schedule(0.5) == 0.0123
    sac = small(SAC, "Pendulum-v1")
    assert len(optimizers(sac)) == 3  # actor, critic and the entropy coefficient's
    assert len(optimizers(small(TD3, "Pendulum-v1"))) == 2
    assert len(optimizers(small(PPO, "CartPole-v1", n_steps=32, batch_size=16))) == 1
