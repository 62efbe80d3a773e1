"""``RewardCallback``: own the reward weights of a ``LiveRewardWrapper`` in the training env.

When the env's :class:`~livetune_rl.wrappers.LiveRewardWrapper` is in pushed mode (it does not
read live variables itself: the usual case under ``SubprocVecEnv``, whose workers cannot see
this process's registry), the callback registers ``reward.<term>`` and ``reward.scale`` and,
at the first env step after a set, as one group:

* pushes the weights to every env of the vector with ``env_method`` (``DummyVecEnv`` and
  ``SubprocVecEnv`` alike), so all envs switch at the same step;
* gives them to a :class:`~livetune_rl.sb3.buffers.RelabelingReplayBuffer`, which re-labels
  the stored transitions before the next sample;
* resets the return statistics of a ``VecNormalize(norm_reward=True)`` in the stack (they
  describe the old reward), or only warns with ``reset_reward_stats=False``.

Example::

    model.learn(100_000, callback=RewardCallback(registry))
    # elsewhere: livetune set reward.hungry_thirsty -0.5 reward.scale=2
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.running_mean_std import RunningMeanStd

from ..knobs import Knobs
from ..registry import LiveVariable, Registry, default_registry
from ..values import Value
from .buffers import RelabelingReplayBuffer
from .knobs import log_applied

SCALE = "reward.scale"


class RewardCallback(BaseCallback):
    """Registers the reward weights of the env's ``LiveRewardWrapper`` and pushes their sets.

    Args:
        registry: where to register (default: the process-wide registry).
        reset_reward_stats: with ``VecNormalize(norm_reward=True)`` in the stack, reset its
            return statistics when the weights change (else only warn).
        verbose: 1 prints every applied change.
    """

    def __init__(self, registry: Registry | None = None, *, reset_reward_stats: bool = True,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        self.registry = registry if registry is not None else default_registry()
        self.reset_reward_stats = reset_reward_stats
        self.knobs = Knobs(self.registry)
        self.variables: dict[str, LiveVariable] = {}
        self._attached_to: BaseAlgorithm | None = None

    def attach(self, model: BaseAlgorithm) -> None:
        """Register the weights of ``model``'s env now (``learn()`` does it too)."""
        if self._attached_to is model:
            return
        self.detach()
        self.model = model
        self._attached_to = model
        env = model.get_env()
        if env is None or not env.has_attr("get_reward_spec"):
            return
        spec = env.env_method("get_reward_spec", indices=[0])[0]
        if spec.get("live"):
            return  # the wrapper reads its own live variables in this process
        low, high = spec["bounds"]
        for term in spec["components"]:
            self.variables[f"reward.{term}"] = LiveVariable(
                f"reward.{term}", float(spec["weights"][term]), min=low, max=high,
                deferred=True, help=f"reward weight of '{term}'", registry=self.registry)
        self.variables[SCALE] = LiveVariable(
            SCALE, float(spec["scale"]), min=0.0, max=float(spec.get("scale_max", 100.0)),
            deferred=True, help="overall reward multiplier (sigma)", registry=self.registry)
        self.knobs.add_group(list(self.variables.values()), self._apply)

    def detach(self) -> None:
        """Unregister the weights (learn() called with another model, or the end of use)."""
        self.knobs.close()
        self.variables = {}
        self._attached_to = None

    def _init_callback(self) -> None:
        self.attach(self.model)

    def _on_training_start(self) -> None:
        if not self.variables:
            return
        events = self.knobs.apply_pending(self.num_timesteps)
        if events:
            log_applied(self, events)
        else:  # the envs may hold other weights (a new env, a loaded model): push ours
            self._push({n: v.value for n, v in self.variables.items()})

    def _on_step(self) -> bool:
        events = self.knobs.apply_pending(self.num_timesteps)
        if events:
            log_applied(self, events)
        return True

    def _push(self, values: dict[str, Value]) -> None:
        weights = {name[len("reward."):]: float(value) for name, value in values.items()
                   if name != SCALE}
        scale = float(values[SCALE])
        self.training_env.env_method("set_reward_weights", weights, scale)
        buffer = getattr(self.model, "replay_buffer", None)
        if isinstance(buffer, RelabelingReplayBuffer):
            buffer.set_reward_weights(weights, scale)

    def _apply(self, values: dict[str, Value]) -> dict[str, Any]:
        """The group's apply: push, then say what happened to VecNormalize's statistics."""
        self._push(values)
        vec_normalize = self.model.get_vec_normalize_env()
        if vec_normalize is None or not vec_normalize.norm_reward:
            return {}
        if self.reset_reward_stats:
            vec_normalize.ret_rms = RunningMeanStd(shape=())
            vec_normalize.returns = np.zeros(vec_normalize.num_envs)
            return {"vecnormalize": "reward statistics reset"}
        warnings.warn(
            "reward weights changed under VecNormalize(norm_reward=True): its return "
            "statistics still reflect the old reward, so the scale shifts until they adapt",
            stacklevel=2,
        )
        return {"vecnormalize": "reward statistics kept (warned)"}
