"""LiveRewardWrapper: live and pushed modes, component sources, info keys."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import gymnasium as gym
import pytest

import livetune_rl as lt
from livetune_rl.wrappers import LiveRewardWrapper


class Components(gym.Env):
    """A tiny env that reports fixed reward components: a=1 every step, b=2 on odd steps."""

    observation_space = gym.spaces.Discrete(10)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self.t = 0
        return 0, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        self.t += 1
        parts = {"a": 1.0, "b": 2.0 if self.t % 2 else 0.0}
        return self.t, 123.0, False, self.t >= 9, {"reward_components": parts}


def test_live_mode_reads_registry_every_step() -> None:
    reg = lt.Registry()
    env = LiveRewardWrapper(Components(), {"a": 1.0, "b": 0.0}, registry=reg)
    env.reset(seed=0)
    assert env.step(0)[1] == 1.0  # 1*1 + 0*2, the env's own 123 is replaced
    reg.set({"reward.b": 0.5, "reward.scale": 2.0})
    _, reward, _, _, info = env.step(0)  # t=2: b=0
    assert reward == 2.0
    _, reward, _, _, info = env.step(0)  # t=3: b=2
    assert reward == pytest.approx(2.0 * (1.0 + 0.5 * 2.0))
    assert info["reward_weights"] == {"a": 1.0, "b": 0.5} and info["reward_scale"] == 2.0


def test_reward_weights_info_is_shared_until_a_change_read_only_and_cheap_to_copy() -> None:
    reg = lt.Registry()
    env = LiveRewardWrapper(Components(), {"a": 1.0, "b": 0.0}, registry=reg)
    env.reset(seed=0)
    first = env.step(0)[4]["reward_weights"]
    assert env.step(0)[4]["reward_weights"] is first  # no dict built per step
    with pytest.raises(TypeError, match="read-only"):
        first["a"] = 5.0
    assert copy.deepcopy([first])[0] is first  # what DummyVecEnv does to every info
    assert pickle.loads(pickle.dumps(first)) == {"a": 1.0, "b": 0.0}  # SubprocVecEnv
    reg.set({"reward.b": 0.5})
    after = env.step(0)[4]["reward_weights"]
    assert after == {"a": 1.0, "b": 0.5} and first == {"a": 1.0, "b": 0.0}


def test_copies_share_live_variables() -> None:
    reg = lt.Registry()
    first = LiveRewardWrapper(Components(), {"a": 1.0}, registry=reg)
    second = LiveRewardWrapper(Components(), {"a": 1.0}, registry=reg)
    reg.set({"reward.a": -1.0})
    assert first.reward_weights() == second.reward_weights() == {"a": -1.0}


def test_bounds_are_enforced_on_live_weights() -> None:
    reg = lt.Registry()
    LiveRewardWrapper(Components(), {"a": 1.0}, registry=reg, bounds=(-1.0, 1.0))
    with pytest.raises(lt.InvalidValueError, match="maximum"):
        reg.set({"reward.a": 2.0})
    with pytest.raises(lt.InvalidValueError, match="minimum"):
        reg.set({"reward.scale": -1.0})


def test_pushed_mode_and_component_fn() -> None:
    calls: list[Any] = []

    def parts(obs: Any, action: Any, next_obs: Any, info: dict) -> dict[str, float]:
        calls.append((obs, action, next_obs))
        return {"progress": float(next_obs - obs)}

    env = LiveRewardWrapper(Components(), {"progress": 1.0}, component_fn=parts)
    assert not env.live
    env.reset(seed=0)
    assert env.step(1)[1] == 1.0
    env.set_reward_weights({"progress": 3.0}, scale=0.5)
    _, reward, _, _, info = env.step(0)
    assert reward == 1.5 and calls[-1] == (1, 0, 2)
    assert info["reward_components"] == {"progress": 1.0}
    with pytest.raises(KeyError, match="unknown reward component"):
        env.set_reward_weights({"nope": 1.0})
    assert env.get_reward_spec()["weights"] == {"progress": 3.0}


def test_missing_components_count_zero_and_bad_names_are_refused() -> None:
    env = LiveRewardWrapper(Components(), {"a": 1.0, "c": 5.0})
    env.reset()
    assert env.step(0)[1] == 1.0
    with pytest.raises(lt.InvalidNameError):
        LiveRewardWrapper(Components(), {"not a name": 1.0})
    with pytest.raises(lt.InvalidValueError):
        LiveRewardWrapper(Components(), {})
    live = LiveRewardWrapper(Components(), {"a": 1.0}, registry=lt.Registry())
    with pytest.raises(RuntimeError):
        live.set_reward_weights({"a": 2.0})


def test_episode_totals_of_each_component_come_on_the_last_step() -> None:
    env = LiveRewardWrapper(Components(), {"a": 1.0, "b": -1.0})
    for _ in range(2):  # and they start again from zero after a reset
        env.reset(seed=0)
        infos = [env.step(0)[4] for _ in range(9)]
        assert all("episode_reward_components" not in i for i in infos[:-1])
        # a=1 on each of 9 steps; b=2 on the 5 odd steps; weights do not enter the totals
        assert infos[-1]["episode_reward_components"] == {"a": 9.0, "b": 10.0}


# --------------------------------------------------------------------------- the env's own reward
class _Scored(gym.Env):
    """Reward 3.0 per step and a component ``tilt`` of 0.5 in its info."""

    observation_space = gym.spaces.Discrete(1)
    action_space = gym.spaces.Discrete(1)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple:
        return 0, {}

    def step(self, action: int) -> tuple:
        return 0, 3.0, False, False, {"reward_components": {"tilt": 0.5}}


def test_the_env_component_is_the_wrapped_env_s_own_reward() -> None:
    env = LiveRewardWrapper(_Scored(), {"env": 1.0, "tilt": -2.0})
    env.reset()
    assert env.step(0)[1] == 3.0 - 2.0 * 0.5
    env.set_reward_weights({"env": 0.5})
    assert env.step(0)[1] == 0.5 * 3.0 - 2.0 * 0.5


def test_env_alone_is_the_identity_with_a_live_scale() -> None:
    from livetune_rl import Registry

    reg = Registry()
    env = LiveRewardWrapper(_Scored(), {"env": 1.0}, registry=reg)
    env.reset()
    assert env.step(0)[1] == 3.0
    reg.set({"reward.scale": 2.0})
    _, reward, _, _, info = env.step(0)
    assert reward == 6.0 and info["reward_weights"] == {"env": 1.0}


def test_the_env_reward_is_summed_per_episode() -> None:
    env = LiveRewardWrapper(gym.wrappers.TimeLimit(_Scored(), max_episode_steps=2),
                            {"env": 1.0, "tilt": 1.0})
    env.reset()
    env.step(0)
    info = env.step(0)[4]
    assert info["episode_reward_components"] == {"env": 6.0, "tilt": 1.0}
