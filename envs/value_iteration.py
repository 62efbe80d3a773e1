"""Exact planning on Hungry-Thirsty: what fitness a reward's optimal policy reaches.

The env's full state is small: a cell, ``hungry`` and ``thirsty`` (64 states on the 4x4
grid), and its rules (:mod:`livetune_rl.envs.hungry_thirsty`) give the transition
probabilities exactly, so dynamic programming answers two questions without any learning:

* :func:`ceiling`: the best expected fitness any policy can reach in a ``max_steps`` episode
  on a layout (finite-horizon value iteration on fitness itself);
* :func:`reward_optimum`: for reward weights (the four one-hot components of the pre-step
  state), the policies that are optimal for that reward under discount ``gamma`` (the
  discounted Bellman optimality equation, solved by value iteration, with every action
  within ``tol`` of the best kept as a tie) and the expected fitness those policies reach:
  the lowest and the highest over every way of breaking the ties, and the fitness of the
  first-index tie break (:func:`greedy_policy`). PPO with discount ``gamma`` optimizes that
  reward, so the highest of these is what a perfectly trained agent can reach with it.

Fitness is counted as the env counts it: one per step on which the agent eats. Every
episode starts on a uniformly random cell, not hungry and not thirsty.

Example::

    >>> from livetune_rl.envs.value_iteration import ceiling, reward_optimum
    >>> layout = ((0, 0), (3, 3))  # food and water in opposite corners
    >>> round(ceiling(layout), 1)
    67.4
    >>> weights = {"hungry_thirsty": -1.0, "hungry_not_thirsty": -0.05,
    ...            "not_hungry_thirsty": -1.0, "not_hungry_not_thirsty": 0.0}
    >>> reward_optimum(weights, layout).high
    0.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .hungry_thirsty import REWARD_COMPONENTS, Action, Corner, HungryThirstyEnv

__all__ = ["Model", "RewardOptimum", "build_model", "ceiling", "greedy_policy",
           "reward_optimum"]

_EAT, _DRINK = int(Action.EAT), int(Action.DRINK)


@dataclass(frozen=True)
class Model:
    """The env's dynamics on a layout as arrays over states ``s = (cell * 2 + hungry) * 2 +
    thirsty``.

    ``next_state[s, a, k]`` with probability ``prob[s, a, k]`` (k: the two thirst outcomes),
    ``ate[s, a]`` (1.0 when that action eats), ``component[s]`` (the index in
    :data:`REWARD_COMPONENTS` of the state, which the env's reward weighs) and ``start`` (the
    distribution of the first state)."""

    next_state: np.ndarray
    prob: np.ndarray
    ate: np.ndarray
    component: np.ndarray
    start: np.ndarray
    max_steps: int

    @property
    def n_states(self) -> int:
        return int(self.component.shape[0])


def build_model(layout: tuple[Corner, Corner], **env_kwargs: object) -> Model:
    """The transition model of ``HungryThirstyEnv(layout=layout, **env_kwargs)``.

    The grid, walls, ``thirst_prob`` and ``max_steps`` are read from an env built with those
    arguments, so the model follows whatever the env is configured with.

    :param layout: ``(food, water)`` corners.
    :param env_kwargs: other :class:`HungryThirstyEnv` arguments (``size``, ``walls``,
        ``thirst_prob``, ``max_steps``).
    """
    env = HungryThirstyEnv(layout=layout, noise_std=0.0, **env_kwargs)  # type: ignore[arg-type]
    n_cells, n_actions, p = env.n_cells, len(Action), env.thirst_prob
    food = layout[0][1] * env.size + layout[0][0]
    water = layout[1][1] * env.size + layout[1][0]
    n = n_cells * 4
    next_state = np.zeros((n, n_actions, 2), dtype=np.int64)
    prob = np.zeros((n, n_actions, 2))
    ate = np.zeros((n, n_actions))
    component = np.zeros(n, dtype=np.int64)
    start = np.zeros(n)
    for cell in range(n_cells):
        for hungry in (0, 1):
            for thirsty in (0, 1):
                s = (cell * 2 + hungry) * 2 + thirsty
                component[s] = (0 if hungry else 2) + (0 if thirsty else 1)
                if not hungry and not thirsty:
                    start[s] = 1.0 / n_cells
                for a in range(n_actions):
                    eats = a == _EAT and cell == food and not thirsty
                    drinks = a == _DRINK and cell == water
                    nxt = int(env.transitions[cell, a])
                    h = 0 if eats else 1
                    ate[s, a] = float(eats)
                    if drinks:  # not thirsty after drinking, whatever the draw
                        outcomes = ((0, 1.0), (0, 0.0))
                    elif thirsty:
                        outcomes = ((1, 1.0), (1, 0.0))
                    else:
                        outcomes = ((1, p), (0, 1.0 - p))
                    for k, (t, q) in enumerate(outcomes):
                        next_state[s, a, k] = (nxt * 2 + h) * 2 + t
                        prob[s, a, k] = q
    return Model(next_state, prob, ate, component, start, env.max_steps)


def _expect(model: Model, values: np.ndarray) -> np.ndarray:
    """``E[values(s')]`` for every ``(s, a)``."""
    return (model.prob * values[model.next_state]).sum(axis=2)


def _finite_horizon(model: Model, allowed: np.ndarray, best: bool) -> float:
    """Expected episode fitness from the start distribution, maximized (``best``) or minimized
    over the actions ``allowed[s, a]`` at every step of a ``max_steps`` episode."""
    values = np.zeros(model.n_states)
    for _ in range(model.max_steps):
        q = model.ate + _expect(model, values)
        q = np.where(allowed, q, -np.inf if best else np.inf)
        values = q.max(axis=1) if best else q.min(axis=1)
    return float(model.start @ values)


def ceiling(layout: tuple[Corner, Corner], **env_kwargs: object) -> float:
    """The highest expected fitness of a ``max_steps`` episode on ``layout`` (any policy).

    :param layout: ``(food, water)`` corners.
    :param env_kwargs: other :class:`HungryThirstyEnv` arguments.
    """
    model = build_model(layout, **env_kwargs)
    return _finite_horizon(model, np.ones_like(model.ate, dtype=bool), best=True)


def _weights_vector(weights: Mapping[str, float]) -> np.ndarray:
    unknown = set(weights) - set(REWARD_COMPONENTS)
    if unknown:
        raise ValueError(f"unknown reward components {sorted(unknown)}; "
                         f"known: {list(REWARD_COMPONENTS)}")
    return np.array([float(weights.get(c, 0.0)) for c in REWARD_COMPONENTS])


def _optimal_actions(model: Model, weights: Mapping[str, float], gamma: float,
                     tol: float) -> np.ndarray:
    """``allowed[s, a]``: True where ``a`` is within ``tol`` of the best discounted value."""
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")
    reward = _weights_vector(weights)[model.component]  # the pre-step state's weight
    values = np.zeros(model.n_states)
    for _ in range(100_000):
        q = reward[:, None] + gamma * _expect(model, values)
        new = q.max(axis=1)
        done = np.max(np.abs(new - values)) < 1e-12
        values = new
        if done:
            break
    q = reward[:, None] + gamma * _expect(model, values)
    return q >= q.max(axis=1, keepdims=True) - tol


def greedy_policy(weights: Mapping[str, float], layout: tuple[Corner, Corner], *,
                  gamma: float = 0.99, tol: float = 1e-9, **env_kwargs: object) -> np.ndarray:
    """An optimal policy of the reward ``weights``: ``policy[cell, hungry, thirsty]`` is the
    lowest-index optimal action.

    :param weights: weight of each reward component (missing ones weigh 0).
    :param layout: ``(food, water)`` corners.
    :param gamma: discount of the return the policy maximizes.
    :param tol: actions within ``tol`` of the best value count as optimal.
    """
    model = build_model(layout, **env_kwargs)
    allowed = _optimal_actions(model, weights, gamma, tol)
    return allowed.argmax(axis=1).reshape(-1, 2, 2)


@dataclass(frozen=True)
class RewardOptimum:
    """Expected episode fitness of the policies optimal for a reward on one layout."""

    low: float
    """lowest over every tie break among the optimal actions"""
    high: float
    """highest over every tie break (what a perfectly trained agent can reach)"""
    greedy: float
    """of :func:`greedy_policy` (the first-index tie break)"""


def reward_optimum(weights: Mapping[str, float], layout: tuple[Corner, Corner], *,
                   gamma: float = 0.99, tol: float = 1e-9,
                   **env_kwargs: object) -> RewardOptimum:
    """The fitness that optimizing the reward ``weights`` (discount ``gamma``) leads to.

    :param weights: weight of each reward component (missing ones weigh 0).
    :param layout: ``(food, water)`` corners.
    :param gamma: discount of the return being optimized (PPO's ``gamma``).
    :param tol: actions within ``tol`` of the best discounted value count as optimal.
    :param env_kwargs: other :class:`HungryThirstyEnv` arguments.
    """
    model = build_model(layout, **env_kwargs)
    allowed = _optimal_actions(model, weights, gamma, tol)
    first = np.zeros_like(allowed)
    first[np.arange(model.n_states), allowed.argmax(axis=1)] = True
    return RewardOptimum(low=_finite_horizon(model, allowed, best=False),
                         high=_finite_horizon(model, allowed, best=True),
                         greedy=_finite_horizon(model, first, best=True))
