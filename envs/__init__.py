"""Gymnasium environments of livetune_rl; importing this package registers them.

* ``livetune/HungryThirsty-v0``: :class:`HungryThirstyEnv`, the reward-design gridworld of
  Singh, Lewis & Barto (2009). The env truncates its own episodes (200 steps), so no
  ``TimeLimit`` wrapper is added.

Example::

    >>> import gymnasium as gym
    >>> import livetune_rl.envs
    >>> env = gym.make("livetune/HungryThirsty-v0", layout_seed=0)
    >>> env.observation_space.shape
    (18,)
"""

from __future__ import annotations

import gymnasium

from ..env_ids import HUNGRY_THIRSTY_ID
from .hungry_thirsty import DEFAULT_REWARD_WEIGHTS, REWARD_COMPONENTS, Action, HungryThirstyEnv

__all__ = ["DEFAULT_REWARD_WEIGHTS", "HUNGRY_THIRSTY_ID", "REWARD_COMPONENTS", "Action",
           "HungryThirstyEnv"]

if HUNGRY_THIRSTY_ID not in gymnasium.registry:  # importing twice (or reloading) is harmless
    gymnasium.register(
        id=HUNGRY_THIRSTY_ID,
        entry_point="livetune_rl.envs.hungry_thirsty:HungryThirstyEnv",
    )
