"""A replay buffer that re-labels stored rewards when the live reward weights change.

Off-policy algorithms (DQN, SAC, TD3) learn from transitions collected long ago. When the
reward design changes live, old transitions would keep teaching the old reward. This buffer
stores the reward components of every transition (from ``info["reward_components"]``, which
:class:`~livetune_rl.wrappers.LiveRewardWrapper` always fills) and, whenever the weights it is
given change, recomputes ``reward = scale * components . weights`` for every stored transition
before the next sample, so every sampled batch follows the weights in effect, as the paper's
RL code did. Transitions whose info carried no components keep the reward they were stored with.

On-policy algorithms (PPO, A2C) need no relabelling: their rollout is collected and used
within one update, with the weights in effect when it was collected.

Example::

    model = DQN("MlpPolicy", env, replay_buffer_class=RelabelingReplayBuffer,
                replay_buffer_kwargs={"components": list(REWARD_COMPONENTS)})
    model.learn(100_000, callback=LiveTuneCallback())   # the callback pushes weight changes
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize


class RelabelingReplayBuffer(ReplayBuffer):
    """``ReplayBuffer`` plus per-transition reward components and live re-labelling.

    Args:
        components: the reward component names, in the order of the weights.
        (other arguments as SB3's ``ReplayBuffer``)
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: Any = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        *,
        components: Sequence[str],
    ) -> None:
        super().__init__(buffer_size, observation_space, action_space, device, n_envs=n_envs,
                         optimize_memory_usage=optimize_memory_usage,
                         handle_timeout_termination=handle_timeout_termination)
        self.component_names = tuple(components)
        shape = (self.buffer_size, self.n_envs, len(self.component_names))
        self.components = np.zeros(shape, dtype=np.float32)
        self.has_components = np.zeros((self.buffer_size, self.n_envs), dtype=bool)
        self.weights: np.ndarray | None = None
        self.scale = 1.0
        self._dirty = False
        self.relabel_count = 0

    def set_reward_weights(self, weights: Mapping[str, float], scale: float = 1.0) -> None:
        """Use these weights from the next sample on (re-labels the stored transitions once)."""
        self.weights = np.array([float(weights[c]) for c in self.component_names],
                                dtype=np.float32)
        self.scale = float(scale)
        self._dirty = True

    def add(self, obs: np.ndarray, next_obs: np.ndarray, action: np.ndarray,
            reward: np.ndarray, done: np.ndarray, infos: list[dict[str, Any]]) -> None:
        row = self.pos
        for env_index, info in enumerate(infos):
            parts = info.get("reward_components")
            if parts:
                self.components[row, env_index] = [float(parts.get(c, 0.0))
                                                   for c in self.component_names]
                self.has_components[row, env_index] = True
            else:
                self.has_components[row, env_index] = False
        super().add(obs, next_obs, action, reward, done, infos)

    def relabel(self) -> None:
        """Recompute the reward of every stored transition that has components."""
        if self.weights is None:
            return
        upper = self.buffer_size if self.full else self.pos
        mask = self.has_components[:upper]
        fresh = self.scale * (self.components[:upper] @ self.weights)
        self.rewards[:upper] = np.where(mask, fresh, self.rewards[:upper])
        self._dirty = False
        self.relabel_count += 1

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        if self._dirty:
            self.relabel()
        return super().sample(batch_size, env=env)
