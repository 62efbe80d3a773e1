"""Every knob of every SB3 algorithm, set live through ``LiveTuneCallback`` as a user would:
the change takes effect where SB3 reads it, without an error (a knob that fails is journaled,
not raised, so only a test that reads the journal notices), and the knob's starting value is
the one in effect when the callback attaches."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.utils import FloatSchedule, LinearSchedule
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

import livetune_rl as lt
from livetune_rl.private import UnsafePathError
from livetune_rl.sb3 import (
    LiveSchedule,
    LiveTuneCallback,
    RelabelingReplayBuffer,
    live_schedule,
    load_checkpoint,
    optimizers,
)
from livetune_rl.wrappers import LiveRewardWrapper

# a new value for every knob, each different from its SB3 default
NEW: dict[str, float | int] = {
    "learning_rate": 1.5e-4, "ent_coef": 0.03, "target_entropy": -2.5, "clip_range": 0.15,
    "exploration_rate": 0.25, "gamma": 0.91, "gae_lambda": 0.85, "n_epochs": 2,
    "batch_size": 4, "vf_coef": 0.35, "max_grad_norm": 0.45, "target_kl": 0.02, "tau": 0.02,
    "gradient_steps": 2,
}

MODELS: dict[str, Any] = {
    "PPO": lambda: PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, n_epochs=1),
    "A2C": lambda: A2C("MlpPolicy", "CartPole-v1", n_steps=8),
    "DQN": lambda: DQN("MlpPolicy", "CartPole-v1", buffer_size=200, learning_starts=0,
                       batch_size=8, train_freq=8),
    "SAC": lambda: SAC("MlpPolicy", "Pendulum-v1", buffer_size=200, learning_starts=0,
                       batch_size=8, train_freq=8),
    "SAC-fixed": lambda: SAC("MlpPolicy", "Pendulum-v1", buffer_size=200, learning_starts=0,
                             batch_size=8, train_freq=8, ent_coef=0.2),
    "TD3": lambda: TD3("MlpPolicy", "Pendulum-v1", buffer_size=200, learning_starts=0,
                       batch_size=8, train_freq=8),
}


def in_effect(model: Any, name: str) -> set[Any]:
    """Every place SB3 reads a knob from while it trains."""
    progress = model._current_progress_remaining
    if name == "learning_rate":
        return {g["lr"] for opt in optimizers(model) for g in opt.param_groups} | {
            model.lr_schedule(progress), model.learning_rate}
    if name == "ent_coef":
        return {model.ent_coef, *([float(model.ent_coef_tensor)]
                                  if hasattr(model, "ent_coef_tensor") else [])}
    if name in ("clip_range", "exploration_schedule"):
        return {getattr(model, name)(progress)}
    if name == "exploration_rate":
        return {model.exploration_rate, model.exploration_schedule(progress)}
    if name in ("gamma", "gae_lambda") and hasattr(model, "rollout_buffer"):
        return {getattr(model, name), getattr(model.rollout_buffer, name)}
    return {getattr(model, name)}


@pytest.mark.parametrize("algo", list(MODELS))
def test_every_knob_set_live_takes_effect_without_an_error(algo: str, tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "j.jsonl")
    model = MODELS[algo]()
    model.set_random_seed(0)
    callback = LiveTuneCallback(registry, reward=False)
    callback.attach(model)
    knobs = [n for n in registry.names() if n in NEW]
    assert len(knobs) >= 5
    registry.set({name: NEW[name] for name in knobs})
    model.learn(32, callback=callback)
    applied = {e.name: e for e in lt.read_journal(tmp_path / "j.jsonl") if e.kind == "applied"}
    assert sorted(applied) == sorted(knobs)
    assert {n: e.data for n, e in applied.items() if e.data} == {}  # no apply failed
    # DQN's epsilon at the next step, every other knob at the first rollout end
    rollout_end = 16 if algo == "PPO" else 8
    assert {n: e.step for n, e in applied.items()} == {
        n: 1 if n == "exploration_rate" else rollout_end for n in knobs}
    for name in knobs:
        values = in_effect(model, name)
        assert all(v == pytest.approx(NEW[name]) for v in values), (name, values)
        assert registry.variable(name).value == NEW[name]
    if "target_kl" in knobs:
        registry.set({"target_kl": 0.0})  # 0 turns PPO's early stop off
        model.learn(16, callback=callback, reset_num_timesteps=False)
        assert model.target_kl is None


class Probe(BaseCallback):
    """Reads what a knob's value is in SB3's loss at every rollout end, after the callback
    applied its knobs there."""

    def __init__(self, read: Any) -> None:
        super().__init__()
        self.read, self.seen = read, []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.seen.append(self.read(self.model))


def test_a_knob_starts_at_the_value_in_effect_when_the_callback_attaches() -> None:
    # a second learn() of a model whose schedules decayed over the first one
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, n_epochs=1, seed=0,
                learning_rate=lambda progress: 1e-4 + 1e-3 * progress,
                clip_range=lambda progress: 0.1 + 0.3 * progress)
    model.learn(32)
    assert model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    registry = lt.Registry()
    LiveTuneCallback(registry, knobs=["learning_rate", "clip_range"]).attach(model)
    assert registry.variable("learning_rate").value == pytest.approx(1e-4)
    assert registry.variable("clip_range").value == pytest.approx(0.1)


def test_a_value_in_effect_outside_a_knobs_rules_does_not_stop_the_run() -> None:
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, n_epochs=1, seed=0,
                clip_range=lambda progress: 0.2 * progress)
    model.learn(16)  # the schedule ends at 0
    registry = lt.Registry()
    with pytest.warns(UserWarning, match="clip_range is not live for this run"):
        model.learn(16, callback=LiveTuneCallback(registry, knobs=["clip_range", "gamma"]))
    assert registry.variable("gamma").value == model.gamma
    assert "clip_range" not in registry


def test_a_set_learning_rate_replaces_the_schedule_for_the_rest_of_the_run() -> None:
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, n_epochs=1, seed=0,
                learning_rate=lambda progress: 1e-3 * progress)
    registry = lt.Registry()
    callback = LiveTuneCallback(registry, knobs=["learning_rate"])
    probe = Probe(lambda m: m.policy.optimizer.param_groups[0]["lr"])

    class SetAt(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps == 40:
                registry.set({"learning_rate": 5e-4})
            return True

    model.learn(64, callback=CallbackList([callback, SetAt(), probe]))
    # before the set, the schedule decays; from the rollout end after it on, the set value
    assert probe.seen == pytest.approx([1e-3, 7.5e-4, 5e-4, 5e-4])
    assert model.policy.optimizer.param_groups[0]["lr"] == 5e-4  # train() kept it


def test_a_value_beyond_what_the_algorithm_can_take_is_refused_with_its_limit() -> None:
    registry = lt.Registry()
    model = DQN("MlpPolicy", "CartPole-v1", buffer_size=200, learning_starts=0)
    LiveTuneCallback(registry).attach(model)
    with pytest.raises(lt.InvalidValueError, match=r"larger than the buffer \(200\)"):
        registry.set({"batch_size": 201})
    registry.set({"batch_size": 200})
    assert registry.variable("batch_size").value == 200
    ppo = PPO("MlpPolicy", DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2), n_steps=16,
              batch_size=16)
    registry = lt.Registry()
    LiveTuneCallback(registry).attach(ppo)
    with pytest.raises(lt.InvalidValueError,
                       match=r"larger than the rollout \(n_steps x n_envs = 32\)"):
        registry.set({"batch_size": 33})
    registry.set({"batch_size": 32})  # the whole rollout of both envs in one batch


def test_a_live_schedule_follows_its_base_until_set_and_pickles_to_sb3s_own_schedule() -> None:
    schedule = LiveSchedule(LinearSchedule(1.0, 0.0, 1.0))
    assert (schedule(1.0), schedule(0.25), schedule.override) == (1.0, 0.25, None)
    copy = pickle.loads(pickle.dumps(schedule))
    assert type(copy) is FloatSchedule and copy(0.25) == 0.25  # the base, unchanged
    schedule.override_with(0.1)
    assert schedule(1.0) == schedule(0.0) == 0.1
    assert repr(schedule) == "LiveSchedule(base=LinearSchedule(start=1.0, end=0.0, " \
                             "end_fraction=1.0), override=0.1)"
    copy = pickle.loads(pickle.dumps(schedule))
    assert type(copy) is FloatSchedule and copy(1.0) == copy(0.0) == 0.1
    assert LiveSchedule(0.3)(0.7) == 0.3  # a constant becomes a schedule
    again = LiveSchedule(schedule)  # wrapping one again keeps one level and no override
    assert type(again.base) is LinearSchedule and again(0.5) == 0.5
    owner = SimpleNamespace(clip=0.2)
    live = live_schedule(owner, "clip")
    assert owner.clip is live and live_schedule(owner, "clip") is live and live(0.5) == 0.2


def parts_info(a: float, b: float) -> dict[str, Any]:
    return {"reward_components": {"a": a, "b": b}}


def test_relabeling_rewrites_every_stored_reward_with_components_once_per_change() -> None:
    buffer = RelabelingReplayBuffer(4, gym.spaces.Box(-1, 1, (1,), np.float32),
                                    gym.spaces.Discrete(2), device="cpu",
                                    components=["a", "b"])
    rows = [(parts_info(1, 0), 5.0), (parts_info(0, 1), 5.0), ({}, 7.0),
            ({"reward_components": {"a": 2.0}}, 5.0), (parts_info(1, 1), 5.0),
            (parts_info(3, 0), 5.0)]  # 6 transitions in 4 rows: the first two overwritten
    for info, reward in rows:
        buffer.add(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1)), np.array([reward]),
                   np.zeros(1), [info])
    assert buffer.full and buffer.pos == 2
    buffer.sample(2)  # no weights yet: the stored rewards stand
    assert buffer.relabel_count == 0 and buffer.rewards[:, 0].tolist() == [5.0, 5.0, 7.0, 5.0]
    buffer.set_reward_weights({"b": 10.0, "a": -1.0}, scale=0.5)
    buffer.sample(2)
    buffer.sample(2)
    # rows: (1, 1), (3, 0), no components (kept), a=2 with b missing (counts 0)
    assert buffer.rewards[:, 0].tolist() == [4.5, -1.5, 7.0, -1.0]
    assert buffer.relabel_count == 1  # once per change, not once per sample


def reward_cartpole() -> gym.Env:
    return LiveRewardWrapper(gym.make("CartPole-v1"), {"alive": 1.0})


def test_only_the_newest_periodic_checkpoints_are_kept_and_requested_ones_stay(
        tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "j.jsonl")
    env = VecNormalize(DummyVecEnv([reward_cartpole]), norm_reward=False)
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0)
    callback = LiveTuneCallback(registry, knobs=[], run_dir=tmp_path / "run",
                                checkpoint_every=16, keep_checkpoints=2)

    class FireAt(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps == 31:  # handled at step 32, a periodic step too
                registry.fire("checkpoint")
            return True

    model.learn(80, callback=CallbackList([callback, FireAt()]))
    root = tmp_path / "run" / "checkpoints"
    # the requested checkpoint at step 32 stays one made on request when the periodic one
    # writes into the same directory, so it is never pruned
    assert sorted(p.name for p in root.iterdir()) == ["step_32", "step_64", "step_80"]
    meta = json.loads((root / "step_32" / "live_values.json").read_text())
    assert meta["periodic"] is False and meta["num_timesteps"] == 32
    assert json.loads((root / "step_80" / "live_values.json").read_text())["periodic"] is True
    events = [e.data for e in lt.read_journal(tmp_path / "j.jsonl") if e.name == "checkpoint"
              and e.kind == "event"]
    assert [e["path"] for e in events] == [str(root / f"step_{n}")
                                           for n in (16, 32, 32, 48, 64, 80)]
    assert events[-1]["files"] == ["model.zip", "vecnormalize.pkl", "live_values.json"]
    removed = [r for e in events for r in e.get("removed", [])]
    assert removed == [str(root / f"step_{n}") for n in (16, 48)]
    loaded, values = load_checkpoint(root / "step_80")
    assert isinstance(loaded, PPO) and values == {"reward.alive": 1.0, "reward.scale": 1.0}


def test_a_reward_change_under_vecnormalize_without_reset_warns_and_says_so(
        tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "j.jsonl")
    env = VecNormalize(DummyVecEnv([reward_cartpole]), norm_reward=True)
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0)
    callback = LiveTuneCallback(registry, knobs=[], reset_reward_stats=False)
    model.learn(16, callback=callback)
    count = env.ret_rms.count
    registry.set({"reward.alive": 2.0})
    with pytest.warns(UserWarning, match="return statistics still reflect the old reward"):
        model.learn(16, callback=callback, reset_num_timesteps=False)
    assert env.ret_rms.count > count  # kept, not restarted
    [applied] = [e for e in lt.read_journal(tmp_path / "j.jsonl") if e.kind == "applied"]
    assert applied.data == {"vecnormalize": "reward statistics kept (warned)"}


def test_a_user_knob_applies_at_the_rollout_end_unless_asked_for_every_step(
        tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "j.jsonl")
    seen: dict[str, list[Any]] = {"train": [], "step": []}
    callback = LiveTuneCallback(registry, knobs=[], reward=False)
    callback.add_knob("my.train", 1.0, lambda v: seen["train"].append(v), help="my own knob")
    callback.add_knob("my.step", 1.0, lambda v: seen["step"].append(v), every_step=True)
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, n_epochs=1, seed=0)
    callback.attach(model)
    registry.set({"my.train": 2.0, "my.step": 3.0})
    model.learn(16, callback=callback)
    assert seen == {"train": [2.0], "step": [3.0]}
    assert registry.variable("my.train").help == "my own knob"
    applied = {e.name: e.step for e in lt.read_journal(tmp_path / "j.jsonl")
               if e.kind == "applied"}
    assert applied == {"my.train": 16, "my.step": 1}


def test_a_failing_trigger_is_logged_by_name_and_training_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    registry = lt.Registry()
    callback = LiveTuneCallback(registry, knobs=[], reward=False)
    callback.add_trigger("boom", lambda cb: 1 / 0)
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, n_epochs=1, seed=0)
    callback.attach(model)
    registry.fire("boom")
    with caplog.at_level(logging.ERROR):
        model.learn(16, callback=callback)
    assert model.num_timesteps == 16
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1 and "boom" in failures[0].getMessage()
    assert failures[0].exc_info is not None and failures[0].exc_info[0] is ZeroDivisionError


def test_without_a_run_directory_checkpoints_go_under_the_current_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    callback = LiveTuneCallback(lt.Registry(), knobs=[], reward=False)
    callback.attach(PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16))
    path = callback.checkpoint(tag="manual")
    assert path == Path("checkpoints") / "manual"
    assert (tmp_path / "checkpoints" / "manual" / "model.zip").is_file()


def test_a_user_knobs_rule_and_a_user_triggers_help_reach_the_registry() -> None:
    registry = lt.Registry()
    callback = LiveTuneCallback(registry, knobs=[], reward=False)
    callback.add_knob("my.even", 2, lambda v: None, check=lambda v: None if v % 2 == 0
                      else "must be even")
    callback.add_trigger("snapshot", lambda cb: {"at": cb.num_timesteps}, "save a snapshot")
    callback.attach(PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16))
    with pytest.raises(lt.InvalidValueError, match="must be even"):
        registry.set({"my.even": 3})
    assert registry.trigger("snapshot").help == "save a snapshot"


def test_an_off_policy_checkpoint_holds_the_replay_buffer_and_loads_it(tmp_path: Path) -> None:
    model = DQN("MlpPolicy", "CartPole-v1", buffer_size=200, learning_starts=0, seed=0)
    callback = LiveTuneCallback(lt.Registry(), knobs=["gamma"], run_dir=tmp_path)
    model.learn(20, callback=callback)
    path = callback.checkpoint(tag="manual")
    assert sorted(p.name for p in path.iterdir()) == [
        "live_values.json", "model.zip", "replay_buffer.pkl"]
    loaded, values = load_checkpoint(path)
    assert loaded.replay_buffer.size() == model.replay_buffer.size() == 20
    assert values == {"gamma": model.gamma}
    (path / "replay_buffer.pkl").chmod(0o666)  # now anyone could have planted code in it
    with pytest.raises(UnsafePathError, match=r"^refusing to load a checkpoint from "):
        load_checkpoint(path)
