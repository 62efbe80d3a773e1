"""LiveRewardWrapper as an RL user sees it: which weight multiplies which component, in both
modes, whatever order a change names them in."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import pytest

import livetune_rl as lt
from livetune_rl.wrappers import LiveRewardWrapper, RewardWeights


class Parts(gym.Env):
    """Reports components a=1, b=10, c=100 every step (so a reward names its weights), ends
    after ``length`` steps."""

    observation_space = gym.spaces.Discrete(100)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int = 5, parts: dict[str, float] | None = None) -> None:
        self.length = length
        self.parts = parts if parts is not None else {"a": 1.0, "b": 10.0, "c": 100.0}

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self.t = 0
        return 0, {"reset": True}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        self.t += 1
        return self.t, -7.0, False, self.t >= self.length, {"reward_components": dict(self.parts)}


def test_partial_weights_in_another_order_land_on_their_own_components() -> None:
    env = LiveRewardWrapper(Parts(), {"a": 1.0, "b": 2.0, "c": 3.0})
    env.reset(seed=0)
    assert env.step(0)[1] == pytest.approx(1 + 20 + 300)
    env.set_reward_weights({"c": -1.0, "a": 5.0})  # partial, and c before a
    assert env.reward_weights() == {"a": 5.0, "b": 2.0, "c": -1.0}
    _, reward, _, _, info = env.step(0)
    assert reward == pytest.approx(5 * 1 + 2 * 10 - 1 * 100)
    assert info["reward_weights"] == {"a": 5.0, "b": 2.0, "c": -1.0}
    env.set_reward_weights({"b": 0.5})  # one weight only: the others keep their values
    assert env.step(0)[1] == pytest.approx(5 * 1 + 0.5 * 10 - 1 * 100)
    assert env.get_reward_spec()["weights"] == {"a": 5.0, "b": 0.5, "c": -1.0}


def test_scale_alone_keeps_weights_and_weights_alone_keep_scale() -> None:
    env = LiveRewardWrapper(Parts(), {"a": 1.0, "b": 0.0, "c": 0.0}, scale=2.0)
    env.reset()
    assert env.step(0)[1] == 2.0
    env.set_reward_weights(scale=3.0)
    assert env.step(0)[1] == 3.0 and env.reward_weights() == {"a": 1.0, "b": 0.0, "c": 0.0}
    env.set_reward_weights({"b": 1.0})
    _, reward, _, _, info = env.step(0)
    assert reward == 33.0 and info["reward_scale"] == 3.0 and env.reward_scale() == 3.0
    env.set_reward_weights(scale=0.0)
    assert env.step(0)[1] == 0.0 and env.reward_scale() == 0.0


def test_a_refused_partial_change_changes_nothing() -> None:
    env = LiveRewardWrapper(Parts(), {"a": 1.0, "b": 2.0, "c": 3.0})
    env.reset()
    with pytest.raises(KeyError, match="'d'"):
        env.set_reward_weights({"a": 9.0, "d": 1.0}, scale=5.0)
    assert env.reward_weights() == {"a": 1.0, "b": 2.0, "c": 3.0} and env.reward_scale() == 1.0


def test_live_weights_in_another_order_land_on_their_own_components() -> None:
    registry = lt.Registry()
    env = LiveRewardWrapper(Parts(), {"a": 1.0, "b": 2.0, "c": 3.0}, registry=registry,
                            scale=1.5)
    assert env.live
    assert registry.values() == {"reward.a": 1.0, "reward.b": 2.0, "reward.c": 3.0,
                                 "reward.scale": 1.5}
    env.reset()
    registry.set({"reward.c": 0.0, "reward.a": -2.0})
    _, reward, _, _, info = env.step(0)
    assert reward == pytest.approx(1.5 * (-2 * 1 + 2 * 10))
    assert info["reward_weights"] == {"a": -2.0, "b": 2.0, "c": 0.0}
    assert env.reward_weights() == {"a": -2.0, "b": 2.0, "c": 0.0}
    assert env.get_reward_spec() == {"components": ["a", "b", "c"],
                                     "weights": {"a": -2.0, "b": 2.0, "c": 0.0}, "scale": 1.5,
                                     "bounds": [-10.0, 10.0], "scale_max": 100.0, "live": True}


def test_live_variables_have_the_bounds_and_help_the_wrapper_was_given() -> None:
    registry = lt.Registry()
    LiveRewardWrapper(Parts(), {"a": 1.0}, registry=registry, bounds=(-2, 3), scale_max=7)
    weight, scale = registry.variable("reward.a"), registry.variable("reward.scale")
    assert (weight.spec.min, weight.spec.max) == (-2.0, 3.0)
    assert (scale.spec.min, scale.spec.max) == (0.0, 7.0)
    assert "'a'" in weight.help and "multiplier" in scale.help
    registry.set({"reward.a": 3.0, "reward.scale": 7.0})  # the bounds are inclusive
    with pytest.raises(lt.InvalidValueError):
        registry.set({"reward.scale": 7.5})


def test_the_env_reward_is_replaced_and_missing_or_zero_components_add_nothing() -> None:
    env = LiveRewardWrapper(Parts(parts={"a": 0.0, "b": 2.0}), {"a": 4.0, "c": 9.0})
    obs, info = env.reset(seed=3)
    assert obs == 0 and info == {"reset": True}  # reset passes through
    obs, reward, terminated, truncated, info = env.step(0)
    assert (obs, reward, terminated, truncated) == (1, 0.0, False, False)
    # a zero component does not count in the episode totals either
    for _ in range(4):
        info = env.step(0)[4]
    assert info["episode_reward_components"] == {"a": 0.0, "c": 0.0}


def test_component_fn_sees_previous_and_next_observation_and_its_parts_reach_info() -> None:
    seen: list[tuple[Any, Any, Any]] = []

    def parts(obs: Any, action: Any, next_obs: Any, info: dict) -> dict[str, float]:
        seen.append((obs, action, next_obs))
        return {"x": float(next_obs) * 2}

    env = LiveRewardWrapper(Parts(), {"x": 0.5}, component_fn=parts)
    env.reset()
    rewards = [env.step(a)[1] for a in (1, 0, 1)]
    assert seen == [(0, 1, 1), (1, 0, 2), (2, 1, 3)] and rewards == [1.0, 2.0, 3.0]
    env.reset()
    _, _, _, _, info = env.step(0)
    assert seen[-1] == (0, 0, 1) and info["reward_components"] == {"x": 2.0}


def test_episode_totals_are_per_component_and_restart_after_the_last_step() -> None:
    env = LiveRewardWrapper(Parts(length=3), {"a": 1.0, "b": 1.0, "c": 1.0})
    env.reset()
    infos = [env.step(0)[4] for _ in range(3)]
    assert infos[-1]["episode_reward_components"] == {"a": 3.0, "b": 30.0, "c": 300.0}
    env.env.t = 0  # the env goes on without a reset (an auto-resetting vector env's view)
    infos = [env.step(0)[4] for _ in range(3)]
    assert infos[-1]["episode_reward_components"] == {"a": 3.0, "b": 30.0, "c": 300.0}


def test_pushed_weights_mapping_is_new_only_when_the_weights_change() -> None:
    env = LiveRewardWrapper(Parts(), {"a": 1.0, "b": 2.0})
    env.reset()
    first = env.step(0)[4]["reward_weights"]
    assert isinstance(first, RewardWeights) and first == {"a": 1.0, "b": 2.0}
    env.set_reward_weights({"a": 1.0})  # same values: the same shared mapping
    assert env.step(0)[4]["reward_weights"] is first
    env.set_reward_weights({"b": 3.0})
    second = env.step(0)[4]["reward_weights"]
    assert second == {"a": 1.0, "b": 3.0} and first == {"a": 1.0, "b": 2.0}


def test_reward_weights_mapping_refuses_every_kind_of_write() -> None:
    weights = RewardWeights({"a": 1.0})
    for write in (lambda w: w.update(a=2.0), lambda w: w.pop("a"), lambda w: w.popitem(),
                  lambda w: w.clear(), lambda w: w.setdefault("b", 1.0),
                  lambda w: w.__delitem__("a"), lambda w: w.__ior__({"a": 3.0})):
        with pytest.raises(TypeError, match="read-only"):
            write(weights)
    assert weights == {"a": 1.0}


class Walk(gym.Env):
    """Moves by the action taken and reports the distance walked in its info."""

    observation_space = gym.spaces.Discrete(100)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self.x = 0
        return self.x, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        self.x += int(action)
        return self.x, 0.0, False, False, {"walked": float(action)}


def test_the_action_reaches_the_env_and_component_fn_sees_its_info() -> None:
    def parts(obs: Any, action: Any, next_obs: Any, info: dict) -> dict[str, float]:
        return {"walked": info["walked"], "moved": float(next_obs - obs)}

    env = LiveRewardWrapper(Walk(), {"walked": 1.0, "moved": 10.0}, component_fn=parts)
    env.reset()
    assert [env.step(a)[1] for a in (2, 0, 1)] == [22.0, 0.0, 11.0]
    assert env.env.x == 3


def test_misuse_is_refused_with_what_to_do() -> None:
    with pytest.raises(lt.InvalidValueError,
                       match=r"^LiveRewardWrapper needs at least one component weight$"):
        LiveRewardWrapper(Parts(), {})
    live = LiveRewardWrapper(Parts(), {"a": 1.0}, registry=lt.Registry())
    with pytest.raises(RuntimeError, match=r"^this LiveRewardWrapper reads live variables; "
                                           r"set those instead$"):
        live.set_reward_weights(scale=2.0)


class Seeded(Parts):
    """Records what each reset was given."""

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[int, dict]:
        self.given = (seed, options)
        return super().reset(seed=seed, options=options)


def test_reset_passes_the_seed_and_options_to_the_env() -> None:
    inner = Seeded()
    env = LiveRewardWrapper(inner, {"a": 1.0})
    env.reset(seed=7, options={"layout": 3})
    assert inner.given == (7, {"layout": 3})
    env.reset()
    assert inner.given == (None, None)


def test_live_scale_and_texts_a_user_reads() -> None:
    registry = lt.Registry()
    env = LiveRewardWrapper(Parts(), {"a": 1.0}, registry=registry, scale=2.0)
    registry.set({"reward.scale": 4.0})
    assert env.reward_scale() == 4.0 and env.get_reward_spec()["scale"] == 4.0
    assert registry.variable("reward.scale").help == "overall reward multiplier"
    assert registry.variable("reward.a").help == "reward weight of 'a'"
    with pytest.raises(TypeError) as info:
        env.reset()
        env.step(0)[4]["reward_weights"]["a"] = 2.0
    assert str(info.value) == ("info['reward_weights'] is read-only; set the live variables "
                               "instead")
