"""SB3 knobs as a user sees them on a real model: each knob reaches every place SB3 reads it
from (every param group of every optimizer for the learning rate)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch as th
from sb3_helpers import AtStep
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.vec_env import DummyVecEnv

import livetune_rl as lt
from livetune_rl.sb3 import KNOBS, LiveTuneCallback, knobs_for, load_checkpoint, optimizers
from livetune_rl.wrappers import LiveRewardWrapper


class Capture(KVWriter):
    """An SB3 logger output that keeps every dumped value."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def write(self, key_values: dict[str, Any], key_excluded: Any, step: int = 0) -> None:
        self.rows.append(dict(key_values))

    def values(self, key: str) -> list[Any]:
        return [row[key] for row in self.rows if key in row]




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
    assert knob_names(small(DQN, "CartPole-v1")) == off_policy | {
        "exploration_rate", "max_grad_norm", "target_update_interval"}
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


def tilt_parts(obs: Any, action: Any, next_obs: Any, info: dict[str, Any]) -> dict[str, float]:
    return {"alive": 1.0, "tilt": abs(float(next_obs[2]))}


def reward_cartpole() -> gym.Env:
    return LiveRewardWrapper(gym.make("CartPole-v1"), {"alive": 1.0, "tilt": -0.5},
                             component_fn=tilt_parts, bounds=(-2.0, 3.0), scale_max=5.0)


def small_ppo(n_envs: int = 1) -> PPO:
    return PPO("MlpPolicy", DummyVecEnv([reward_cartpole] * n_envs), n_steps=16, batch_size=16,
               n_epochs=1, seed=0, device="cpu")


def test_attach_registers_knobs_reward_weights_and_triggers_and_close_removes_them() -> None:
    registry = lt.Registry()
    lt.LiveVariable("mine", 1, registry=registry)
    callback = LiveTuneCallback(registry, knobs=["learning_rate", "gamma"])
    model = small_ppo()
    callback.attach(model)
    callback.attach(model)  # again for the same model: nothing changes
    assert registry.names() == sorted(["mine", "learning_rate", "gamma", "reward.alive",
                                       "reward.tilt", "reward.scale", "checkpoint", "evaluate",
                                       "stop"])
    tilt, scale = registry.variable("reward.tilt"), registry.variable("reward.scale")
    assert (tilt.value, tilt.spec.min, tilt.spec.max, tilt.deferred) == (-0.5, -2.0, 3.0, True)
    assert (scale.value, scale.spec.min, scale.spec.max) == (1.0, 0.0, 5.0)
    assert "'tilt'" in tilt.help and scale.help == "overall reward multiplier (sigma)"
    assert registry.trigger("stop").help == "final checkpoint, then end learn()"
    assert registry.variable("gamma").value == model.gamma
    callback.attach(small_ppo())  # another model: its own registration replaces the first
    assert "reward.tilt" in registry and "stop" in registry
    callback.close()
    assert registry.names() == ["mine"]


def test_no_reward_ownership_and_no_wrapper_register_no_weights() -> None:
    registry = lt.Registry()
    LiveTuneCallback(registry, reward=False, knobs=[]).attach(small_ppo())
    assert registry.names() == ["checkpoint", "evaluate", "stop"]
    plain = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, device="cpu")
    registry2 = lt.Registry()
    LiveTuneCallback(registry2, knobs=[]).attach(plain)
    assert registry2.names() == ["checkpoint", "evaluate", "stop"]


def test_reward_change_reaches_every_env_and_is_journaled_at_the_step(tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "j.jsonl")
    model = small_ppo(n_envs=2)
    callback = LiveTuneCallback(registry, knobs=[])
    seen: list[tuple[int, list[Any]]] = []

    class Infos(BaseCallback):
        def _on_step(self) -> bool:
            seen.append((self.num_timesteps, [dict(i["reward_weights"]) for i in
                                              self.locals["infos"]]))
            return True

    def change(_: BaseCallback) -> None:
        registry.set({"reward.scale": 2.0, "reward.tilt": 1.0})

    model.learn(32, callback=CallbackList([callback, AtStep(10, change), Infos()]))
    # pushed at step 12 (the first safe point after the set): every env steps with the new
    # weights from the next env step on
    after = [weights for step, weights in seen if step > 12]
    before = [weights for step, weights in seen if step <= 12]
    assert all(w == [{"alive": 1.0, "tilt": -0.5}] * 2 for w in before)
    assert all(w == [{"alive": 1.0, "tilt": 1.0}] * 2 for w in after)
    assert model.get_env().env_method("reward_scale") == [2.0, 2.0]
    applied = [e for e in lt.read_journal(tmp_path / "j.jsonl") if e.kind == "applied"]
    assert sorted(e.name for e in applied) == ["reward.scale", "reward.tilt"]
    assert {e.step for e in applied} == {12}  # the next step after the set (2 envs a step)
    assert not registry.variable("reward.tilt").pending


def test_knobs_apply_at_the_rollout_end_and_are_logged(tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "j.jsonl")
    model = small_ppo()
    capture = Capture()
    model.set_logger(Logger(None, [capture]))
    callback = LiveTuneCallback(registry, knobs=["gamma", "n_epochs"], verbose=1)
    steps: list[int] = []
    callback.add_knob("my.every", 1, lambda v: steps.append(v), every_step=True)
    callback.attach(model)
    registry.set({"gamma": 0.9, "my.every": 3})

    model.learn(32, callback=callback)
    assert model.gamma == 0.9 and steps == [3]
    applied = {e.name: e.step for e in lt.read_journal(tmp_path / "j.jsonl")
               if e.kind == "applied"}
    assert applied == {"gamma": 16, "my.every": 1}  # rollout end vs. next env step
    assert 0.9 in capture.values("live/gamma") and 3 in capture.values("live/my.every")
    assert capture.values("live/n_epochs") != []  # every train knob is logged each rollout


def test_evaluate_without_an_eval_env_says_so_and_checkpoint_writes_the_values(
        tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "j.jsonl")
    model = small_ppo()
    callback = LiveTuneCallback(registry, knobs=["gamma"], run_dir=tmp_path / "run")
    callback.attach(model)
    registry.set({"gamma": 0.95})
    model.learn(16, callback=callback)
    assert callback.evaluate() == {"error": "no eval_env given to LiveTuneCallback"}
    path = callback.checkpoint()
    assert path == tmp_path / "run" / "checkpoints" / "step_16" == callback.last_checkpoint
    meta = json.loads((path / "live_values.json").read_text())
    assert meta["algorithm"] == "PPO" and meta["num_timesteps"] == 16
    assert meta["values"]["gamma"] == 0.95 and meta["version"] >= 1
    events = [e for e in lt.read_journal(tmp_path / "j.jsonl") if e.kind == "event"]
    assert [e.name for e in events] == ["evaluate", "checkpoint"]
    assert events[1].data == {"path": str(path), "files": ["model.zip", "live_values.json"]}
    assert events[1].step == 16
    loaded, values = load_checkpoint(path)
    assert isinstance(loaded, PPO) and values["gamma"] == 0.95


def test_stop_trigger_ends_learn_with_a_final_checkpoint(tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "j.jsonl")
    model = small_ppo()
    callback = LiveTuneCallback(registry, knobs=[], run_dir=tmp_path)
    callback.add_trigger("boom", lambda cb: 1 / 0)  # a failing trigger never ends training
    callback.attach(model)
    registry.fire("boom")
    model.learn(48, callback=CallbackList([callback, AtStep(20, lambda _: registry.fire(
        "stop"))]))
    assert callback.stopped and model.num_timesteps == 21
    assert (tmp_path / "checkpoints" / "final" / "model.zip").exists()
    events = {e.name: e for e in lt.read_journal(tmp_path / "j.jsonl") if e.kind == "event"}
    assert events["boom"].data == {"error": "ZeroDivisionError: division by zero"}
    assert events["stop"].data == {"checkpoint": str(tmp_path / "checkpoints" / "final")}
    assert events["stop"].step == 21
    model.learn(16, callback=callback)  # a new learn() starts unstopped
    assert not callback.stopped and model.num_timesteps == 16


def test_periodic_checkpoints_and_evaluations(tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "j.jsonl")
    model = small_ppo()
    eval_env = DummyVecEnv([reward_cartpole])
    callback = LiveTuneCallback(registry, knobs=[], run_dir=tmp_path, eval_env=eval_env,
                                n_eval_episodes=1, eval_every=20, checkpoint_every=30)
    model.learn(64, callback=callback)
    events = [(e.name, e.step) for e in lt.read_journal(tmp_path / "j.jsonl")
              if e.kind == "event"]
    assert [s for n, s in events if n == "evaluate"] == [20, 40, 60]
    assert [s for n, s in events if n == "checkpoint"] == [30, 60]
    result = callback.last_evaluation
    assert result is not None and result["episodes"] == 1 and result["total_timesteps"] == 64
    assert result["mean_length"] >= 1 and result["std_reward"] == 0.0
