"""Hungry-Thirsty as registered with Gymnasium: the documented defaults hold when the user
passes nothing (``gym.make("livetune/HungryThirsty-v0")``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import livetune_rl.envs  # noqa: F401  (registers the id)
from livetune_rl.envs.hungry_thirsty import Action


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
