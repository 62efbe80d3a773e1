"""The SB3 parts' promises a user sees, each through the public API (small real runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

import livetune_rl as lt
from livetune_rl import read_journal
from livetune_rl.sb3 import EpisodeTermsCallback, LiveTuneCallback, TriggersCallback
from livetune_rl.sb3.serving import default_run_name


def _ppo() -> PPO:
    return PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, n_epochs=1, seed=0)


class During(BaseCallback):
    """Calls ``probe()`` once, at the first step, and keeps what it returned."""

    def __init__(self, probe: Any) -> None:
        super().__init__()
        self.probe, self.seen = probe, None

    def _on_step(self) -> bool:
        if self.seen is None:
            self.seen = self.probe()
        return True


def test_the_served_run_takes_its_name_and_address_from_arguments_or_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVETUNE_SERVE")
    model = _ppo()
    assert default_run_name(model) == "ppo-CartPole-v1"
    callback = LiveTuneCallback(lt.Registry(), run_name="named")
    probe = During(lambda: (callback.serving.server.run, callback.serving.server.address))
    model.learn(32, callback=CallbackList([callback, probe]))
    assert probe.seen[0] == "named" and callback.serving.server is None
    monkeypatch.setenv("LIVETUNE_ADDR", "127.0.0.1:0")
    monkeypatch.setenv("LIVETUNE_RUN", "from-env")
    callback = LiveTuneCallback(lt.Registry())
    probe = During(lambda: (callback.serving.server.run, callback.serving.server.address))
    model.learn(32, callback=CallbackList([callback, probe]))
    run, address = probe.seen
    assert run == "from-env" and address != "127.0.0.1:50051"  # port 0: a free one


def test_a_knob_keeps_its_bounds() -> None:
    registry = lt.Registry()
    LiveTuneCallback(registry, serve=False).attach(_ppo())
    with pytest.raises(lt.InvalidValueError):
        registry.set({"gamma": 1.5})


def test_triggers_alone_evaluate_only_when_asked(tmp_path: Path) -> None:
    registry = lt.Registry()
    registry.attach_journal(tmp_path / "j.jsonl")
    _ppo().learn(64, callback=TriggersCallback(registry))
    assert not [e for e in read_journal(tmp_path / "j.jsonl") if e.kind == "event"]


def test_a_checkpoint_that_cannot_be_written_is_journaled_with_its_error(
        tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    registry = lt.Registry()
    registry.attach_journal(tmp_path / "j.jsonl")
    callback = LiveTuneCallback(registry, run_dir=blocker / "run", checkpoint_every=16,
                                serve=False)
    model = _ppo()
    model.learn(64, callback=callback)  # training goes on
    assert model.num_timesteps == 64
    events = [e for e in read_journal(tmp_path / "j.jsonl")
              if e.kind == "event" and e.name == "checkpoint"]
    assert events and "error" in events[0].data and events[0].data["error"]


def test_a_user_trigger_returning_nothing_journals_nothing(tmp_path: Path) -> None:
    registry = lt.Registry()
    registry.attach_journal(tmp_path / "j.jsonl")
    calls: list[int] = []
    callback = LiveTuneCallback(registry, serve=False).add_trigger(
        "ping", lambda cb: calls.append(cb.num_timesteps))
    model = _ppo()
    callback.attach(model)
    registry.fire("ping")
    model.learn(32, callback=callback)
    assert len(calls) == 1
    assert not [e for e in read_journal(tmp_path / "j.jsonl")
                if e.kind == "event" and e.name == "ping"]


def test_episode_terms_keep_their_decimals() -> None:
    terms = EpisodeTermsCallback(("fitness",))
    terms.episodes.append({"fitness": 1.25, "reward.a": 0.125})
    assert terms.drain() == {"fitness": [1.25], "reward.a": [0.125]}


def test_a_long_env_id_still_gives_a_valid_run_name() -> None:
    import gymnasium as gym

    name = "livetune/" + "A" * 80 + "-v0"
    gym.register(name, entry_point="gymnasium.envs.classic_control:CartPoleEnv")
    model = PPO("MlpPolicy", name, n_steps=32, batch_size=32, n_epochs=1)
    run = default_run_name(model)
    assert run is not None and len(run) == 64 and run.startswith("ppo-livetune-AAA")


def test_evaluation_uses_the_training_normalization() -> None:
    import numpy as np
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    train_env = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=0))
    eval_env = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=1), training=False)
    registry = lt.Registry()
    model = PPO("MlpPolicy", train_env, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    callback = LiveTuneCallback(registry, eval_env=eval_env, n_eval_episodes=1, serve=False)
    callback.attach(model)
    registry.fire("evaluate")
    model.learn(64, callback=callback)
    # the eval env (training=False) learns no statistics itself: non-zero means are the
    # training env's, copied when the evaluation ran
    assert not np.allclose(eval_env.obs_rms.mean, 0.0)
