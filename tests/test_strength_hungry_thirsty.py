"""Hungry-Thirsty as registered with Gymnasium: the documented defaults hold when the user
passes nothing (``gym.make("livetune/HungryThirsty-v0")``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import livetune_rl.envs  # noqa: F401  (registers the id)
from livetune_rl.envs.hungry_thirsty import Action, HungryThirstyEnv


def test_default_thirst_probability_is_the_documented_one_tenth() -> None:
    """docs/rl.md: the agent "becomes thirsty with probability 0.1 per step unless it just
    drank". Measured through gym.make without passing thirst_prob."""
    env = gym.make("livetune/HungryThirsty-v0", layout_seed=0)
    env.reset(seed=2024)
    n, thirsty = 4000, 0
    for _ in range(n):
        env.reset(options={"position": (1, 1), "thirsty": False})  # no water at (1, 1)
        thirsty += env.step(int(Action.UP))[4]["thirsty"]
    p = 0.1
    assert abs(thirsty / n - p) < 4 * np.sqrt(p * (1 - p) / n)  # 4 sigma: 0.081..0.119


def test_default_episode_is_200_steps_with_noisy_18_value_observations() -> None:
    """docs/rl.md: a 4x4 grid, 6 actions, 200 steps per episode, a noisy one-hot position plus
    the hungry and thirsty flags (18 values)."""
    env = gym.make("livetune/HungryThirsty-v0")
    obs, info = env.reset(seed=5)
    assert obs.shape == (18,) and obs.dtype == np.float32 and env.action_space.n == 6
    assert not np.array_equal(obs, np.round(obs))  # noise on every value
    x, y = info["position"]
    assert int(np.argmax(obs[:16])) == y * 4 + x
    truncated = [env.step(int(Action.UP))[3] for _ in range(200)]
    assert truncated == [False] * 199 + [True]


@pytest.mark.parametrize("std", [0.5, 1.0])
def test_noise_is_gaussian_with_the_given_spread(std: float) -> None:
    env = HungryThirstyEnv(layout_seed=0, noise_std=std)
    env.reset(seed=1)
    base = HungryThirstyEnv(layout_seed=0, noise_std=0.0)
    samples = []
    for _ in range(300):
        obs, info = env.reset()
        clean, _ = base.reset(options={"position": info["position"]})
        samples.append(obs - clean)
    noise = np.concatenate(samples)
    assert abs(noise.mean()) < 0.04 * std and abs(noise.std() - std) < 0.04 * std


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"render_mode": "human"}, r"render_mode must be None or one of \['ansi', 'rgb_array'\], "
                               r"got 'human'"),
    ({"size": 1}, r"size must be >= 2, got 1"),
    ({"max_steps": 0}, r"max_steps must be >= 1, got 0"),
    ({"thirst_prob": 1.5}, r"thirst_prob must be in \[0, 1\], got 1.5"),
    ({"thirst_prob": -0.1}, r"thirst_prob must be in \[0, 1\], got -0.1"),
    ({"noise_std": -1.0}, r"noise_std must be >= 0, got -1.0"),
    ({"noise_std": float("nan")}, r"noise_std must be >= 0, got nan"),
    ({"walls": {(0, 4, 0)}}, r"wall \(0, 4, 0\) is outside the 4x4 grid"),
    ({"walls": {(0, 0, 4)}}, r"wall \(0, 0, 4\): the action must be a move"),
    ({"walls": {(0, 0, -1)}}, r"the action must be a move"),
    ({"layout": ((0, 0), (2, 2))}, r"water must be a corner of the grid"),
    ({"layout": ((1, 1), (0, 0))}, r"^food must be a corner of the grid \(\(0, 0\), "),
    ({"reward_weights": {"thirsty": 1.0}}, r"unknown reward components \['thirsty'\]"),
])
def test_bad_arguments_are_refused_with_the_rule(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HungryThirstyEnv(**kwargs)


def test_edge_arguments_are_accepted() -> None:
    env = HungryThirstyEnv(size=2, max_steps=1, thirst_prob=1.0, noise_std=0.0,
                           layout=((0, 0), (1, 1)), render_mode="ansi")
    _, info = env.reset(seed=0, options={"position": (1, 0)})
    assert env.corners == ((0, 0), (1, 0), (0, 1), (1, 1))
    _, _, _, truncated, info = env.step(int(Action.DOWN))
    assert truncated and info["position"] == (1, 1) and info["thirsty"]
    assert HungryThirstyEnv(thirst_prob=0.0).thirst_prob == 0.0


def test_step_refuses_what_is_not_an_action_and_names_it() -> None:
    env = HungryThirstyEnv(layout_seed=0)
    env.reset(seed=0)
    for action in (-1, 6):
        with pytest.raises(ValueError, match=rf"invalid action {action}: expected 0..5"):
            env.step(action)
    assert env.step(np.int64(5))[4]["position"] == env.step(5)[4]["position"]


def test_reset_options_set_each_part_of_the_start_state() -> None:
    env = HungryThirstyEnv(layout=((0, 0), (3, 3)), noise_std=0.0)
    obs, info = env.reset(seed=0, options={"hungry": True})
    assert info["hungry"] and not info["thirsty"] and obs[16] == 1.0 and obs[17] == 0.0
    obs, info = env.reset(options={"thirsty": True, "position": (3, 0)})
    assert not info["hungry"] and info["thirsty"] and info["position"] == (3, 0)
    assert obs[17] == 1.0 and obs[3] == 1.0 and obs.sum() == 2.0
    with pytest.raises(ValueError, match=r"position \(0, -1\) is outside the 4x4 grid"):
        env.reset(options={"position": (0, -1)})
    with pytest.raises(ValueError, match=r"unknown reset options \['x'\]; known: "
                                         r"\['hungry', 'position', 'thirsty'\]"):
        env.reset(options={"x": 1})


def test_the_layout_is_observed_as_two_corner_one_hots() -> None:
    env = HungryThirstyEnv(layout=((3, 0), (0, 3)), observe_layout=True, noise_std=0.0)
    obs, _ = env.reset(seed=0, options={"position": (0, 0)})
    assert obs.shape == (26,) and env.observation_space.shape == (26,)
    assert list(obs[18:22]) == [0, 1, 0, 0] and list(obs[22:26]) == [0, 0, 1, 0]
    env.set_layout((0, 0), (3, 3))
    obs, _ = env.reset(options={"position": (1, 0)})
    assert list(obs[18:22]) == [1, 0, 0, 0] and list(obs[22:26]) == [0, 0, 0, 1]
    assert obs[1] == 1.0 and obs[:16].sum() == 1.0


def test_reward_weights_left_out_count_zero_and_read_back() -> None:
    env = HungryThirstyEnv(reward_weights={"hungry_thirsty": 2.0}, noise_std=0.0,
                           layout_seed=0)
    assert env.reward_weights == {"hungry_thirsty": 2.0, "hungry_not_thirsty": 0.0,
                                  "not_hungry_thirsty": 0.0, "not_hungry_not_thirsty": 0.0}
    env.reset(seed=0, options={"position": (1, 1), "hungry": True, "thirsty": True})
    assert env.step(int(Action.UP))[1] == 2.0
