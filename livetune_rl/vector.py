"""Live reward weights for Gymnasium's own vector envs (``SyncVectorEnv``, ``AsyncVectorEnv``).

Researchers who write their own training loop (CleanRL's single-file scripts) step a
:class:`gymnasium.vector.VectorEnv`. :class:`LiveVectorReward` gives them what
:class:`~livetune_rl.sb3.LiveTuneCallback` gives SB3 users: the ``reward.<component>`` and
``reward.scale`` live variables live in the training process, and a change reaches **every
sub-env at the same global step**. The sub-envs hold a
:class:`~livetune_rl.wrappers.LiveRewardWrapper` in pushed mode (no registry, plain floats);
before the next ``step`` after a change, the wrapper calls their ``set_reward_weights``
through the vector env's own ``call`` mechanism (in-process for ``SyncVectorEnv``, over the
worker pipes for ``AsyncVectorEnv``), so sub-processes never open a connection.

The check per ``step`` is :meth:`livetune_rl.knobs.Knobs.apply_pending`: one integer
comparison while nothing changed. Each applied change is journaled as ``applied`` with the
global step (env steps summed over sub-envs, as SB3 counts ``num_timesteps``).

Example::

    >>> import gymnasium as gym
    >>> import livetune_rl.envs                       # registers livetune/HungryThirsty-v0
    >>> from livetune_rl import Registry
    >>> from livetune_rl.wrappers import LiveRewardWrapper
    >>> weights = {"hungry_thirsty": -1.0, "hungry_not_thirsty": -1.0,
    ...            "not_hungry_thirsty": 1.0, "not_hungry_not_thirsty": 1.0}
    >>> envs = gym.vector.SyncVectorEnv([
    ...     lambda: LiveRewardWrapper(gym.make("livetune/HungryThirsty-v0"), weights)] * 2)
    >>> reg = Registry()
    >>> envs = LiveVectorReward(envs, registry=reg)
    >>> _ = envs.reset(seed=0)
    >>> _ = reg.set({"reward.hungry_thirsty": -0.5})
    >>> _ = envs.step(envs.action_space.sample())      # pushed before this step
    >>> [w["hungry_thirsty"] for w in envs.unwrapped.call("reward_weights")]
    [-0.5, -0.5]
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from .knobs import Knobs
from .registry import LiveVariable, Registry
from .values import Value
from .wrappers import REWARD_PREFIX, SCALE

__all__ = ["LiveVectorReward"]


class LiveVectorReward(gym.vector.VectorWrapper):
    """Owns the reward weights of every sub-env of a vector env as live variables.

    Every sub-env must contain a :class:`~livetune_rl.wrappers.LiveRewardWrapper` created
    without ``registry`` (pushed mode), anywhere in its wrapper stack, with the same
    components. Their weights and scale at construction become the variables' defaults (a
    variable that already exists in the registry keeps its value, which is then pushed).

    :param env: the vector env (``SyncVectorEnv``, ``AsyncVectorEnv`` or a wrapper of one).
    :param registry: where the variables live (default: the process-wide registry, the one
        :func:`livetune_rl.serve` serves).
    """

    def __init__(self, env: gym.vector.VectorEnv, *, registry: Registry | None = None) -> None:
        super().__init__(env)
        specs = env.call("get_reward_spec")
        first = specs[0]
        for i, spec in enumerate(specs):
            if spec["live"]:
                raise ValueError(
                    f"sub-env {i}'s LiveRewardWrapper reads live variables itself (it was "
                    "given registry=); under LiveVectorReward create it without registry, "
                    "so that the weights are pushed to every sub-env at one step")
            if spec["components"] != first["components"]:
                raise ValueError(
                    f"sub-env {i} has reward components {spec['components']}, sub-env 0 has "
                    f"{first['components']}: every sub-env must shape the same components")
        self.components: list[str] = list(first["components"])
        self.global_step = 0
        """Env steps taken so far, summed over the sub-envs (the step changes are journaled
        with)."""
        self.knobs = Knobs(registry)
        self._vars: dict[str, LiveVariable] = {}
        low, high = first["bounds"]
        for name in self.components:
            self._add(f"{REWARD_PREFIX}.{name}", first["weights"][name],
                      lambda v, c=name: self._push({c: float(v)}, None),
                      min=low, max=high, help=f"reward weight of '{name}'")
        self._add(f"{REWARD_PREFIX}.{SCALE}", first["scale"],
                  lambda v: self._push(None, float(v)),
                  min=0.0, max=first["scale_max"], help="overall reward multiplier")
        # the values in effect (a variable that already existed keeps its own) reach every env
        self.env.call("set_reward_weights",
                      {c: float(self._vars[f"{REWARD_PREFIX}.{c}"].value)
                       for c in self.components},
                      float(self._vars[f"{REWARD_PREFIX}.{SCALE}"].value))

    def _add(self, name: str, default: float, apply: Any, **spec: Any) -> None:
        registry = self.knobs.registry
        if name in registry:  # another copy (or the user) defined it: keep its value
            self._vars[name] = self.knobs.adopt(registry.variable(name), apply)
        else:
            self._vars[name] = self.knobs.add(name, default, apply, **spec)

    def _push(self, weights: dict[str, float] | None, scale: float | None) -> Value:
        self.env.call("set_reward_weights", weights, scale)
        return next(iter(weights.values())) if weights else scale  # type: ignore[return-value]

    def reward_weights(self) -> dict[str, float]:
        """The weights the sub-envs use now (sub-env 0's; they are all the same)."""
        return dict(self.env.call("reward_weights")[0])

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        self.knobs.apply_pending(step=self.global_step)  # hot path: one int comparison
        self.global_step += self.num_envs
        return self.env.step(actions)

    def close(self, **kwargs: Any) -> None:
        """Close the vector env and unregister the reward variables."""
        self.knobs.close()
        super().close(**kwargs)
