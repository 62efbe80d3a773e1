"""The parts LiveTuneCallback is made of, used alone in a CallbackList of one's own, the
evaluation's extra metrics given by the caller, and the evaluate event's one schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.vec_env import DummyVecEnv

import livetune_rl as lt
from livetune_rl.evaluation import EvaluateEvent
from livetune_rl.sb3 import (
    Checkpointer,
    EpisodeTermsCallback,
    Evaluator,
    KnobsCallback,
    LiveTuneCallback,
    RewardCallback,
    TriggersCallback,
)
from livetune_rl.wrappers import LiveRewardWrapper


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVETUNE_HOME", str(tmp_path / "home"))


def _parts(obs: Any, action: Any, next_obs: Any, info: dict[str, Any]) -> dict[str, float]:
    return {"alive": 1.0, "tilt": abs(float(next_obs[2]))}


def _cartpole() -> gym.Env:
    return LiveRewardWrapper(gym.make("CartPole-v1"), {"alive": 1.0, "tilt": 0.0},
                             component_fn=_parts)


def _hungry_thirsty() -> gym.Env:
    import livetune_rl.envs  # noqa: F401

    return gym.make("livetune/HungryThirsty-v0", layout_seed=0)


def _ppo() -> PPO:
    return PPO("MlpPolicy", DummyVecEnv([_cartpole]), n_steps=16, batch_size=16, n_epochs=1,
               seed=0, device="cpu")


def test_knobs_and_triggers_alone_in_a_callback_list_of_ones_own(tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "j.jsonl")
    knobs = KnobsCallback(registry, only=["gamma"])
    triggers = TriggersCallback(registry, checkpointer=Checkpointer(registry, tmp_path))
    triggers.add_trigger("probe", lambda cb: {"step": cb.num_timesteps, "own": cb is triggers})
    model = _ppo()
    knobs.attach(model)
    triggers.attach(model)
    assert registry.names() == ["checkpoint", "evaluate", "gamma", "probe", "stop"]
    registry.set({"gamma": 0.9})
    registry.fire("probe")
    model.learn(32, callback=CallbackList([knobs, triggers]))
    assert model.gamma == 0.9
    events = {e.name: e for e in lt.read_journal(tmp_path / "j.jsonl")
              if e.kind in ("event", "applied")}
    assert events["gamma"].step == 16  # the rollout end
    assert events["probe"].data == {"step": 1, "own": True} and events["probe"].step == 1
    assert triggers.evaluate().error == "no eval_env given to LiveTuneCallback"


def test_reward_callback_alone_pushes_weights_at_the_next_step(tmp_path: Path) -> None:
    registry = lt.Registry()
    reward = RewardCallback(registry)
    model = _ppo()
    reward.attach(model)
    assert sorted(reward.variables) == ["reward.alive", "reward.scale", "reward.tilt"]
    registry.set({"reward.tilt": -2.0})
    model.learn(4, callback=reward)
    assert model.get_env().env_method("reward_weights") == [{"alive": 1.0, "tilt": -2.0}]
    reward.detach()
    assert registry.names() == []


def test_evaluation_metrics_come_from_the_caller_not_the_env() -> None:
    registry = lt.Registry()
    model = PPO("MlpPolicy", DummyVecEnv([_hungry_thirsty]), n_steps=16, batch_size=16,
                seed=0, device="cpu")
    eval_env = DummyVecEnv([_hungry_thirsty])
    plain = LiveTuneCallback(registry, knobs=[], eval_env=eval_env, n_eval_episodes=1)
    plain.attach(model)
    data = plain.evaluate()
    assert "mean_fitness" not in data and data["episodes"] == 1  # nothing built in
    plain.close()
    told = Evaluator(registry, eval_env, n_episodes=2, info_keys=("fitness",))
    event = told.run(model, step=0)
    assert 0 <= event.metric("mean_fitness") <= 200  # type: ignore[operator]
    assert "std_fitness" in event.metrics and event.metrics["episodes"] == 2


def test_the_evaluate_event_reads_back_as_it_was_written() -> None:
    terms = EpisodeTermsCallback(info_keys=("fitness",))
    terms.add({"a": 2.0}, {"fitness": 5})
    terms.add({"a": 1.0}, {"fitness": 7, "other": 1})
    episodes = terms.drain()
    assert episodes == {"fitness": [5.0, 7.0], "reward.a": [2.0, 1.0]} and terms.drain() == {}
    event = EvaluateEvent({"mean_reward": 3.5, "episodes": 2}, total_timesteps=64,
                          train_episodes=episodes)
    data = event.to_data()
    assert data == {"mean_reward": 3.5, "episodes": 2, "total_timesteps": 64,
                    "train_episodes": episodes}
    assert EvaluateEvent.from_data(data) == event
    odd = EvaluateEvent.from_data({"mean_reward": "high", "flag": True, "total_timesteps": "?",
                                   "train_episodes": [1]})
    assert odd == EvaluateEvent()  # what a reader cannot use is ignored, never an error
    assert EvaluateEvent.from_data({"error": "no eval env"}).error == "no eval env"
