"""Gymnasium wrapper that reshapes the reward with live weights.

``reward = scale * sum(weights[c] * components[c])``, where the components come from the env's
``info["reward_components"]`` (any env that reports them, Hungry-Thirsty does) or from a
function ``component_fn(obs, action, next_obs, info) -> {name: value}`` you pass. The
component named ``env`` is the wrapped env's own reward: ``weights={"env": 1.0, "tilt": -2.0}``
with a ``component_fn`` that returns ``tilt`` gives ``r_env - 2 * tilt``, and ``reward.env`` is
live like any weight; with ``env`` alone the wrapper is the identity with a live scale. That
is the usual way to shape any Gymnasium env.

The wrapper runs in two modes:

* **live** (``registry=`` given): it registers ``reward.<component>`` and ``reward.scale``
  live variables (or reuses them if another copy already did) and reads them every step, a
  plain attribute load each. Use this in your own loop.
* **pushed** (no registry, the default): it holds plain floats that :meth:`set_reward_weights`
  replaces. This is how it runs under SB3: :class:`livetune_rl.sb3.LiveTuneCallback` owns the
  live variables in the training process and pushes a change to every env of a
  ``DummyVecEnv`` or ``SubprocVecEnv`` at the same global step, so subprocesses never open a
  connection of their own.

The weights in effect are put in ``info["reward_weights"]`` (and the scale in
``info["reward_scale"]``) on every step: one read-only mapping shared by the steps until the
weights change, so the step loop neither builds nor (in SB3's ``DummyVecEnv``, which
deep-copies every info) copies a dict per step. On an episode's last step
``info["episode_reward_components"]`` holds each component's total over the episode (the
per-term episode sums RL users plot; :class:`~livetune_rl.sb3.LiveTuneCallback` streams them).

Example::

    >>> import gymnasium as gym
    >>> import livetune_rl.envs                       # registers livetune/HungryThirsty-v0
    >>> from livetune_rl import Registry
    >>> reg = Registry()
    >>> env = LiveRewardWrapper(gym.make("livetune/HungryThirsty-v0"),
    ...                         weights={"hungry_thirsty": -1.0, "hungry_not_thirsty": -1.0,
    ...                                  "not_hungry_thirsty": 1.0, "not_hungry_not_thirsty": 1.0},
    ...                         registry=reg)
    >>> sorted(reg.values())[:2]
    ['reward.hungry_not_thirsty', 'reward.hungry_thirsty']

Shaping any env: keep its own reward (``env``) and subtract a penalty on the pole's angle::

    >>> tilt = lambda obs, action, next_obs, info: {"tilt": abs(float(next_obs[2]))}
    >>> cart = LiveRewardWrapper(gym.make("CartPole-v1"), {"env": 1.0, "tilt": -2.0},
    ...                          component_fn=tilt)
    >>> obs, _ = cart.reset(seed=0)
    >>> obs, reward, *_ = cart.step(0)
    >>> reward == 1.0 - 2.0 * abs(float(obs[2]))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, SupportsFloat

import gymnasium as gym

from .registry import LiveVariable, Registry
from .values import InvalidValueError, validate_name

ComponentFn = Callable[[Any, Any, Any, dict[str, Any]], Mapping[str, float]]

REWARD_PREFIX = "reward"
SCALE = "scale"
ENV = "env"
"""The component that is the wrapped env's own reward."""


class RewardWeights(dict[str, float]):
    """The weights in effect, as ``info["reward_weights"]`` holds them: a read-only ``dict``
    that copies (``copy``/``deepcopy``/pickle) as cheaply as it can, shared by every step until
    the weights change.

    Example::

        >>> import copy
        >>> w = RewardWeights({"a": 1.0})
        >>> w == {"a": 1.0}, copy.deepcopy(w) is w
        (True, True)
    """

    __slots__ = ()

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("info['reward_weights'] is read-only; set the live variables instead")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _read_only  # type: ignore[assignment]
    __ior__ = _read_only  # type: ignore[assignment]

    def __copy__(self) -> RewardWeights:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> RewardWeights:
        return self

    def __reduce__(self) -> tuple[type[RewardWeights], tuple[dict[str, float]]]:
        return RewardWeights, (dict(self),)


class LiveRewardWrapper(gym.Wrapper):
    """Reward = scale x sum of live weights x reward components.

    Args:
        env: the environment to wrap.
        weights: initial weight of each component; its keys are the component names.
        scale: initial overall multiplier (the paper's sigma).
        component_fn: computes the components from ``(obs, action, next_obs, info)``; when
            None, they are read from ``info["reward_components"]`` (missing ones count 0).
        registry: live mode: register/reuse ``reward.*`` variables there and read them each
            step. None: pushed mode (plain floats, see :meth:`set_reward_weights`).
        bounds: inclusive bounds of every live weight.
        scale_max: upper bound of the live scale (its lower bound is 0); the paper's sigma
            took values up to 100.
    """

    def __init__(
        self,
        env: gym.Env,
        weights: Mapping[str, float],
        *,
        scale: float = 1.0,
        component_fn: ComponentFn | None = None,
        registry: Registry | None = None,
        bounds: tuple[float, float] = (-10.0, 10.0),
        scale_max: float = 100.0,
    ) -> None:
        super().__init__(env)
        if not weights:
            raise InvalidValueError("LiveRewardWrapper needs at least one component weight")
        self.components: tuple[str, ...] = tuple(weights)
        for name in self.components:
            validate_name(f"{REWARD_PREFIX}.{name}")
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.scale_max = float(scale_max)
        self.component_fn = component_fn
        self._weights = [float(weights[c]) for c in self.components]
        self._scale = float(scale)
        self._live: list[LiveVariable] | None = None
        self._live_scale: LiveVariable | None = None
        self._last_obs: Any = None
        self._episode_totals = [0.0] * len(self.components)
        self._shown: tuple[list[float], RewardWeights] = ([], RewardWeights())
        if registry is not None:
            self._live = [self._variable(registry, c, self._weights[i])
                          for i, c in enumerate(self.components)]
            self._live_scale = self._variable(registry, SCALE, self._scale)

    def _variable(self, registry: Registry, component: str, default: float) -> LiveVariable:
        name = f"{REWARD_PREFIX}.{component}"
        if name in registry:
            return registry.variable(name)  # another copy of this env registered it
        low, high = (0.0, self.scale_max) if component == SCALE else self.bounds
        return LiveVariable(name, default, min=low, max=high, registry=registry,
                            help=f"reward weight of '{component}'" if component != SCALE
                            else "overall reward multiplier")

    # ----------------------------------------------------------------- weights
    @property
    def live(self) -> bool:
        """True when this wrapper reads registry variables itself (live mode)."""
        return self._live is not None

    def reward_weights(self) -> dict[str, float]:
        """The component weights in effect now."""
        if self._live is not None:
            return {c: float(v.value) for c, v in zip(self.components, self._live, strict=True)}
        return dict(zip(self.components, self._weights, strict=True))

    def reward_scale(self) -> float:
        return float(self._live_scale.value) if self._live_scale is not None else self._scale

    def get_reward_spec(self) -> dict[str, Any]:
        """What a trainer needs to own this wrapper's live variables (used by the SB3 callback
        through ``env_method``): components, current weights and scale, bounds, mode."""
        return {"components": list(self.components), "weights": self.reward_weights(),
                "scale": self.reward_scale(), "bounds": list(self.bounds),
                "scale_max": self.scale_max, "live": self.live}

    def set_reward_weights(self, weights: Mapping[str, float] | None = None,
                           scale: float | None = None) -> None:
        """Pushed mode: replace some or all weights and/or the scale from the next step on."""
        if self._live is not None:
            raise RuntimeError("this LiveRewardWrapper reads live variables; set those instead")
        new = list(self._weights)
        for name, value in (weights or {}).items():
            if name not in self.components:
                raise KeyError(f"unknown reward component {name!r}; known: {self.components}")
            new[self.components.index(name)] = float(value)
        self._weights = new  # one store: a step sees the old list or the new one, never a mix
        if scale is not None:
            self._scale = float(scale)

    # ----------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._last_obs = obs
        self._episode_totals = [0.0] * len(self.components)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        if self.component_fn is not None:
            parts = self.component_fn(self._last_obs, action, obs, info)
            info["reward_components"] = dict(parts)
            self._last_obs = obs
        else:
            parts = info.get("reward_components") or {}
        if self._live is not None:  # hot path: one attribute load per weight
            weights = [v.value for v in self._live]
            scale = self._live_scale.value  # type: ignore[union-attr]
        else:
            weights, scale = self._weights, self._scale
        total = 0.0
        totals = self._episode_totals
        for i, name in enumerate(self.components):
            value = float(env_reward) if name == ENV else parts.get(name)
            if value:
                total += weights[i] * value
                totals[i] += value
        shown, mapping = self._shown
        if weights != shown:  # a new shared mapping only when the weights change
            mapping = RewardWeights(zip(self.components, weights, strict=True))
            self._shown = (list(weights), mapping)
        info["reward_weights"] = mapping
        info["reward_scale"] = scale
        if terminated or truncated:
            info["episode_reward_components"] = dict(zip(self.components, totals, strict=True))
            self._episode_totals = [0.0] * len(self.components)
        return obs, scale * total, terminated, truncated, info
