"""SB3 integration: live knobs stick, reward weights reach every env at one step, triggers,
relabelling, save/load. Real SB3 runs with small budgets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from sb3_helpers import AtStep
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

import livetune_rl as lt
from livetune_rl.sb3 import LiveTuneCallback, RelabelingReplayBuffer, load_checkpoint, optimizers
from livetune_rl.wrappers import LiveRewardWrapper

LIVETUNE = [sys.executable, "-m", "livetune_rl.cli"]


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVETUNE_HOME", str(tmp_path / "home"))


class Capture(KVWriter):
    """An SB3 logger output that keeps every dumped key/value with its step."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, Any]]] = []

    def write(self, key_values: dict[str, Any], key_excluded: Any, step: int = 0) -> None:
        self.rows.append((step, dict(key_values)))

    def values(self, key: str) -> list[Any]:
        return [row[key] for _, row in self.rows if key in row]


def cartpole_parts(obs: Any, action: Any, next_obs: Any, info: dict[str, Any]) -> dict[str, float]:
    return {"alive": 1.0, "tilt": abs(float(next_obs[2]))}


def make_hungry_thirsty() -> gym.Env:
    import livetune_rl.envs  # noqa: F401  (registers the id in a subprocess worker too)

    weights = {"hungry_thirsty": -1.0, "hungry_not_thirsty": -1.0, "not_hungry_thirsty": 1.0,
               "not_hungry_not_thirsty": 1.0}
    return LiveRewardWrapper(gym.make("livetune/HungryThirsty-v0", layout_seed=0), weights)


def make_cartpole() -> gym.Env:
    return LiveRewardWrapper(gym.make("CartPole-v1"), {"alive": 1.0, "tilt": 0.0},
                             component_fn=cartpole_parts)




def cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `livetune` command in another process."""
    return subprocess.run([*LIVETUNE, args[0], "--addr", address, *args[1:]],
                          capture_output=True, text=True, timeout=60, env=os.environ.copy())


@pytest.fixture
def served(tmp_path: Path) -> Any:
    registry = lt.Registry()
    server = lt.serve("127.0.0.1:0", registry=registry, journal=tmp_path / "journal.jsonl",
                      run="test", quiet=True)
    yield registry, server
    server.stop(grace=0)


def test_ppo_hungry_thirsty_subproc_lr_set_by_another_process_sticks(
        served: Any, tmp_path: Path) -> None:
    registry, server = served
    env = make_vec_env(make_hungry_thirsty, n_envs=2, vec_env_cls=SubprocVecEnv)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    capture = Capture()
    model.set_logger(Logger(None, [capture]))
    callback = LiveTuneCallback(registry)
    result: dict[str, Any] = {}

    def set_lr(_: BaseCallback) -> None:
        result["cli"] = cli(server.address, "set", "learning_rate", "1e-4")

    try:
        model.learn(320, callback=CallbackList([callback, AtStep(100, set_lr)]))
    finally:
        env.close()
    assert result["cli"].returncode == 0, result["cli"].stderr
    assert {"reward.hungry_thirsty", "reward.scale", "clip_range"} <= set(registry.names())
    lrs = {g["lr"] for opt in optimizers(model) for g in opt.param_groups}
    assert lrs == {1e-4}
    assert model.learning_rate == 1e-4 and model.lr_schedule(0.5) == 1e-4
    assert 1e-4 in capture.values("live/learning_rate")
    # SB3's own train/learning_rate shows the live value too: _update_learning_rate did not undo it
    assert capture.values("train/learning_rate")[-1] == pytest.approx(1e-4)
    applied = [e for e in lt.read_journal(tmp_path / "journal.jsonl")
               if e.kind == "applied" and e.name == "learning_rate"]
    assert len(applied) == 1 and applied[0].new == 1e-4
    assert applied[0].step is not None and 100 <= applied[0].step <= 192
    assert applied[0].step % 64 == 0  # applied at a rollout end (32 steps x 2 envs)


def test_knobs_exist_only_where_the_algorithm_has_them() -> None:
    registry = lt.Registry()
    env = DummyVecEnv([lambda: gym.make("CartPole-v1")])
    LiveTuneCallback(registry).attach(PPO("MlpPolicy", env, n_steps=64))
    assert {"clip_range", "n_epochs", "ent_coef", "target_kl"} <= set(registry.names())
    assert "exploration_rate" not in registry
    registry2 = lt.Registry()
    LiveTuneCallback(registry2).attach(DQN("MlpPolicy", env, learning_starts=0))
    assert "exploration_rate" in registry2 and "tau" in registry2
    assert "clip_range" not in registry2 and "ent_coef" not in registry2


def test_value_the_algorithm_cannot_take_is_refused_before_ack(served: Any) -> None:
    registry, server = served
    env = DummyVecEnv([lambda: gym.make("CartPole-v1")])
    LiveTuneCallback(registry).attach(PPO("MlpPolicy", env, n_steps=64, batch_size=32))
    with lt.connect(server.address) as client:
        with pytest.raises(lt.ClientError) as info:
            client.set({"batch_size": 1000})
        assert info.value.code.name == "INVALID_ARGUMENT"
        assert "batch_size" in str(info.value) and "1000" in str(info.value)
    assert registry.variable("batch_size").value == 32


def test_dqn_exploration_rate_through_its_schedule(served: Any, tmp_path: Path) -> None:
    registry, server = served
    env = DummyVecEnv([lambda: gym.make("CartPole-v1")])
    model = DQN("MlpPolicy", env, learning_starts=50, exploration_fraction=0.5, seed=0,
                train_freq=4)
    callback = LiveTuneCallback(registry)
    seen: list[float] = []

    def set_eps(_: BaseCallback) -> None:
        out = cli(server.address, "set", "exploration_rate", "0.42")
        assert out.returncode == 0, out.stderr

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            seen.append(self.model.exploration_rate)
            return True

    model.learn(400, callback=CallbackList([callback, AtStep(100, set_eps), Record()]))
    # the linear schedule would be well below 0.42 by now; the live value stuck every step
    assert seen[-1] == 0.42 and all(v == 0.42 for v in seen[110:])
    applied = [e for e in lt.read_journal(tmp_path / "journal.jsonl")
               if e.kind == "applied" and e.name == "exploration_rate"]
    assert applied and applied[0].step in (100, 101, 102)


def test_sac_ent_coef_and_learning_rate(served: Any) -> None:
    registry, server = served
    model = SAC("MlpPolicy", "Pendulum-v1", ent_coef=0.2, learning_starts=20, batch_size=16,
                buffer_size=1000, seed=0)
    callback = LiveTuneCallback(registry)

    def change(_: BaseCallback) -> None:
        out = cli(server.address, "set", "ent_coef=0.05", "learning_rate=0.001")
        assert out.returncode == 0, out.stderr

    model.learn(80, callback=CallbackList([callback, AtStep(40, change)]))
    assert float(model.ent_coef_tensor) == pytest.approx(0.05)
    lrs = {g["lr"] for opt in optimizers(model) for g in opt.param_groups}
    assert lrs == {0.001}
    assert "target_entropy" not in registry


def test_sac_auto_entropy_exposes_target_entropy_and_its_optimizer_follows_lr() -> None:
    registry = lt.Registry()
    model = SAC("MlpPolicy", "Pendulum-v1", learning_starts=10, batch_size=8, buffer_size=500)
    callback = LiveTuneCallback(registry)
    callback.attach(model)
    assert "target_entropy" in registry and "ent_coef" not in registry
    registry.set({"learning_rate": 0.002, "target_entropy": -2.0})
    model.learn(30, callback=callback)
    assert model.target_entropy == -2.0
    assert model.ent_coef_optimizer.param_groups[0]["lr"] == 0.002


def _weights_by_step(infos_log: list[tuple[int, list[dict[str, Any]]]]) -> dict[int, set[float]]:
    return {step: {info["reward_weights"]["tilt"] for info in infos} for step, infos in infos_log}


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_reward_weight_change_reaches_every_subprocess_env_at_one_step(
        served: Any, tmp_path: Path, start_method: str) -> None:
    registry, server = served
    env = make_vec_env(make_cartpole, n_envs=2, vec_env_cls=SubprocVecEnv,
                       vec_env_kwargs={"start_method": start_method})
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    log: list[tuple[int, list[dict[str, Any]]]] = []

    class Infos(BaseCallback):
        def _on_step(self) -> bool:
            log.append((self.num_timesteps, list(self.locals["infos"])))
            return True

    def change(_: BaseCallback) -> None:
        out = cli(server.address, "set", "reward.tilt", "-3")
        assert out.returncode == 0, out.stderr

    try:
        model.learn(200, callback=CallbackList([LiveTuneCallback(registry), Infos(),
                                                AtStep(60, change)]))
    finally:
        env.close()
    by_step = _weights_by_step(log)
    assert all(len(weights) == 1 for weights in by_step.values()), "envs disagreed at a step"
    first_new = min(step for step, w in by_step.items() if w == {-3.0})
    assert all(w == {0.0} for step, w in by_step.items() if step < first_new)
    assert all(w == {-3.0} for step, w in by_step.items() if step >= first_new)
    applied = [e for e in lt.read_journal(tmp_path / "journal.jsonl")
               if e.kind == "applied" and e.name == "reward.tilt"]
    assert len(applied) == 1 and applied[0].step == first_new - 2  # 2 envs: one step earlier


def test_triggers_checkpoint_evaluate_stop(served: Any, tmp_path: Path) -> None:
    registry, server = served
    env = DummyVecEnv([make_cartpole])
    eval_env = DummyVecEnv([lambda: gym.make("CartPole-v1")])
    model = DQN("MlpPolicy", env, learning_starts=10, buffer_size=1000, seed=0)
    capture = Capture()
    model.set_logger(Logger(None, [capture]))
    callback = LiveTuneCallback(registry, run_dir=tmp_path / "run", eval_env=eval_env,
                                n_eval_episodes=2)

    def fire_all(_: BaseCallback) -> None:
        for name in ("checkpoint", "evaluate"):
            assert cli(server.address, "fire", name).returncode == 0

    def fire_stop(_: BaseCallback) -> None:
        assert cli(server.address, "fire", "stop").returncode == 0

    model.learn(100_000, callback=CallbackList([callback, AtStep(50, fire_all),
                                                AtStep(120, fire_stop)]))
    assert model.num_timesteps < 200, "stop did not end learn()"
    events = [e for e in lt.read_journal(tmp_path / "journal.jsonl") if e.kind == "event"]
    names = [e.name for e in events]
    assert names.count("checkpoint") == 2 and "evaluate" in names and "stop" in names
    evaluation = next(e for e in events if e.name == "evaluate")
    assert evaluation.data["episodes"] == 2 and evaluation.data["mean_reward"] > 0
    assert evaluation.step is not None and 50 <= evaluation.step <= 52
    final = tmp_path / "run" / "checkpoints" / "final"
    assert {p.name for p in final.iterdir()} >= {"model.zip", "replay_buffer.pkl",
                                                   "live_values.json"}
    loaded, values = load_checkpoint(final, env=DummyVecEnv([make_cartpole]))
    assert isinstance(loaded, DQN) and loaded.replay_buffer.size() > 0
    assert values["learning_rate"] == model.learning_rate


def test_evaluate_event_carries_the_training_episodes_and_the_budget(tmp_path: Path) -> None:
    registry = lt.Registry()
    env = make_vec_env(make_hungry_thirsty, n_envs=2, seed=0)
    eval_env = make_vec_env(make_hungry_thirsty, n_envs=1, seed=1)
    model = PPO("MlpPolicy", env, n_steps=200, batch_size=100, n_epochs=1, seed=0)
    callback = LiveTuneCallback(registry, eval_env=eval_env, n_eval_episodes=1,
                                eval_every=800, episode_info_keys=("fitness",))
    with registry.watch() as watcher:
        model.learn(800, callback=callback)
        events = [e for e in iter(lambda: watcher.get(timeout=0.1), None)
                  if e.kind == "event" and e.name == "evaluate"]
    assert len(events) == 1
    data = events[0].data
    assert data["total_timesteps"] == 800
    episodes = data["train_episodes"]
    assert len(episodes["fitness"]) == 4  # 2 envs x 400 steps / 200-step episodes
    terms = [k for k in episodes if k.startswith("reward.")]
    from livetune_rl.envs import REWARD_COMPONENTS

    assert sorted(terms) == sorted(f"reward.{c}" for c in REWARD_COMPONENTS)
    for i in range(4):  # every step of an episode is exactly one of the four components
        assert sum(episodes[k][i] for k in terms) == 200
        not_hungry = (episodes["reward.not_hungry_thirsty"][i]
                      + episodes["reward.not_hungry_not_thirsty"][i])
        assert abs(episodes["fitness"][i] - not_hungry) <= 1  # state a step began vs ended in
    assert data["train_mean_fitness"] == pytest.approx(np.mean(episodes["fitness"]))
    assert callback.train_episodes == []  # drained into the event


def test_save_load_roundtrip_with_callback_attached(tmp_path: Path) -> None:
    registry = lt.Registry()
    env = DummyVecEnv([make_cartpole])
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    callback = LiveTuneCallback(registry)
    callback.attach(model)
    registry.set({"learning_rate": 5e-4, "clip_range": 0.1})
    model.learn(64, callback=callback)
    model.save(tmp_path / "model.zip")  # nothing unpicklable on the model
    callback.close()
    loaded = PPO.load(tmp_path / "model.zip", env=DummyVecEnv([make_cartpole]))
    assert loaded.learning_rate == 5e-4 and loaded.clip_range(1.0) == 0.1
    assert type(loaded.lr_schedule).__name__ == "FloatSchedule"  # pickled to SB3's own class
    registry2 = lt.Registry()
    again = LiveTuneCallback(registry2)
    loaded.learn(64, callback=again, reset_num_timesteps=False)
    assert registry2.variable("learning_rate").value == 5e-4  # re-attached with saved values
    registry2.set({"learning_rate": 1e-5})
    loaded.learn(64, callback=again, reset_num_timesteps=False)
    assert loaded.policy.optimizer.param_groups[0]["lr"] == 1e-5


def test_user_knob_and_user_trigger() -> None:
    registry = lt.Registry()
    seen: dict[str, Any] = {}
    callback = LiveTuneCallback(registry)
    callback.add_knob("my.temperature", 1.0, lambda v: seen.__setitem__("t", v), min=0.0,
                      every_step=True)
    callback.add_trigger("snapshot", lambda cb: {"timesteps": cb.num_timesteps})
    model = PPO("MlpPolicy", DummyVecEnv([make_cartpole]), n_steps=32, batch_size=32,
                n_epochs=1)
    callback.attach(model)
    registry.set({"my.temperature": 0.5})
    registry.fire("snapshot")
    model.learn(40, callback=callback)
    assert seen["t"] == 0.5
    assert registry.variable("my.temperature").applied_version == \
        registry.variable("my.temperature").version


def test_relabeling_buffer_follows_current_weights() -> None:
    obs_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    act_space = gym.spaces.Discrete(2)
    buffer = RelabelingReplayBuffer(100, obs_space, act_space, device="cpu", n_envs=2,
                                    components=["a", "b"])
    rng = np.random.default_rng(0)
    for _ in range(50):
        parts = rng.integers(0, 2, size=(2, 2)).astype(float)
        infos = [{"reward_components": {"a": p[0], "b": p[1]}} for p in parts]
        buffer.add(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 1)),
                   parts @ np.array([1.0, 0.0]), np.zeros(2), infos)
    buffer.set_reward_weights({"a": -2.0, "b": 3.0}, scale=0.5)
    sample = buffer.sample(64)
    # every sampled reward is 0.5 * (-2 a + 3 b) for a, b in {0, 1}
    assert set(np.round(sample.rewards.numpy().ravel(), 6)) <= {0.0, -1.0, 1.5, 0.5}
    stored = 0.5 * (buffer.components[:50] @ np.array([-2.0, 3.0], dtype=np.float32))
    np.testing.assert_allclose(buffer.rewards[:50], stored)


def test_dqn_relabels_replay_after_weight_change(tmp_path: Path) -> None:
    registry = lt.Registry()
    env = DummyVecEnv([make_cartpole])
    model = DQN("MlpPolicy", env, learning_starts=10, buffer_size=1000, seed=0,
                replay_buffer_class=RelabelingReplayBuffer,
                replay_buffer_kwargs={"components": ["alive", "tilt"]})
    callback = LiveTuneCallback(registry)
    callback.attach(model)
    model.learn(60, callback=callback)
    registry.set({"reward.alive": 0.0, "reward.tilt": 10.0})
    model.learn(5, callback=callback, reset_num_timesteps=False)
    buffer = model.replay_buffer
    upper = buffer.pos
    expected = 10.0 * buffer.components[:upper, :, 1]
    np.testing.assert_allclose(buffer.rewards[:upper], expected, rtol=1e-5)


def test_vecnormalize_reward_stats_reset_on_reward_change(tmp_path: Path) -> None:
    registry = lt.Registry(journal=tmp_path / "journal.jsonl")
    env = VecNormalize(DummyVecEnv([make_cartpole]), norm_reward=True)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1)
    callback = LiveTuneCallback(registry)
    callback.attach(model)
    model.learn(64, callback=callback)
    assert env.ret_rms.count > 1
    registry.set({"reward.alive": 2.0})
    model.learn(1, callback=callback, reset_num_timesteps=False)
    # restarted at the change: only the ~32 steps collected since count (96 without reset)
    assert env.ret_rms.count < 40
    applied = [e for e in lt.read_journal(tmp_path / "journal.jsonl")
               if e.kind == "applied" and e.name == "reward.alive"]
    assert applied[-1].data == {"vecnormalize": "reward statistics reset"}


def test_checkpoint_live_values_file_is_json(tmp_path: Path) -> None:
    registry = lt.Registry()
    model = PPO("MlpPolicy", DummyVecEnv([make_cartpole]), n_steps=32, batch_size=32)
    callback = LiveTuneCallback(registry, run_dir=tmp_path)
    callback.attach(model)
    path = callback.checkpoint(tag="manual")
    data = json.loads((path / "live_values.json").read_text())
    assert data["algorithm"] == "PPO" and data["values"]["reward.tilt"] == 0.0


def pendulum_parts(obs: Any, action: Any, next_obs: Any, info: dict[str, Any]
                   ) -> dict[str, float]:
    return {"upright": float(next_obs[0]), "effort": float(np.square(action).sum())}


def make_pendulum() -> gym.Env:
    return LiveRewardWrapper(gym.make("Pendulum-v1"), {"upright": 1.0, "effort": -0.1},
                             component_fn=pendulum_parts)


def test_td3_learning_rate_reaches_actor_and_critic() -> None:
    from stable_baselines3 import TD3

    registry = lt.Registry()
    model = TD3("MlpPolicy", DummyVecEnv([make_pendulum]), learning_starts=10, batch_size=8,
                buffer_size=500, train_freq=5, seed=0)
    callback = LiveTuneCallback(registry)
    callback.attach(model)
    assert {"learning_rate", "tau", "gamma", "reward.upright"} <= set(registry.names())
    assert "ent_coef" not in registry and "exploration_rate" not in registry
    registry.set({"learning_rate": 5e-4, "tau": 0.01})
    model.learn(30, callback=callback)
    assert model.actor.optimizer.param_groups[0]["lr"] == 5e-4
    assert model.critic.optimizer.param_groups[0]["lr"] == 5e-4
    assert model.tau == 0.01


def test_sac_relabels_replay_after_weight_change() -> None:
    registry = lt.Registry()
    model = SAC("MlpPolicy", DummyVecEnv([make_pendulum]), learning_starts=10, batch_size=8,
                buffer_size=500, seed=0, replay_buffer_class=RelabelingReplayBuffer,
                replay_buffer_kwargs={"components": ["upright", "effort"]})
    callback = LiveTuneCallback(registry)
    callback.attach(model)
    model.learn(40, callback=callback)
    registry.set({"reward.upright": 0.0, "reward.effort": -2.0, "reward.scale": 0.5})
    model.learn(12, callback=callback, reset_num_timesteps=False)
    buffer = model.replay_buffer
    assert buffer.relabel_count >= 1
    expected = 0.5 * -2.0 * buffer.components[:buffer.pos, :, 1]
    np.testing.assert_allclose(buffer.rewards[:buffer.pos], expected, rtol=1e-5, atol=1e-6)
