"""Tests of exact value iteration on Hungry-Thirsty (``livetune_rl.envs.value_iteration``).

The planner's model is written from the env's rules; these tests check it against the env
itself: the greedy optimal policy of a reward, run in the real env, must score what value
iteration predicts (within sampling error), and known facts about the designs must hold.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from livetune_rl.envs import HungryThirstyEnv
from livetune_rl.envs.value_iteration import (
    build_model,
    ceiling,
    greedy_policy,
    reward_optimum,
)

FITNESS = {"not_hungry_thirsty": 1.0, "not_hungry_not_thirsty": 1.0}
DESIGN_A = {"hungry_thirsty": -1.0, "hungry_not_thirsty": -0.05,
            "not_hungry_thirsty": -1.0, "not_hungry_not_thirsty": 0.0}
DESIGN_B = {"hungry_thirsty": -1.0, "hungry_not_thirsty": -0.5,
            "not_hungry_thirsty": -1.0, "not_hungry_not_thirsty": 0.0}
NEAR, FAR = ((3, 0), (0, 0)), ((0, 0), (0, 3))


def simulate(policy: np.ndarray, layout: tuple, episodes: int, seed: int) -> list[int]:
    """Fitness of ``policy[cell, hungry, thirsty]`` in the real env (no observation noise)."""
    env = HungryThirstyEnv(layout=layout, noise_std=0.0)
    out = []
    for i in range(episodes):
        _, info = env.reset(seed=seed + i)
        hungry, thirsty = info["hungry"], info["thirsty"]
        x, y = info["position"]
        done = False
        while not done:
            cell = y * env.size + x
            _, _, _, done, info = env.step(int(policy[cell, int(hungry), int(thirsty)]))
            hungry, thirsty = info["hungry"], info["thirsty"]
            x, y = info["position"]
        out.append(info["fitness"])
    return out


@pytest.mark.parametrize(("weights", "layout"), [(FITNESS, NEAR), (DESIGN_B, FAR)])
def test_greedy_policy_scores_in_the_env_what_value_iteration_predicts(
        weights: dict, layout: tuple) -> None:
    predicted = reward_optimum(weights, layout).greedy
    fitness = simulate(greedy_policy(weights, layout), layout, episodes=200, seed=7)
    mean, se = float(np.mean(fitness)), float(np.std(fitness, ddof=1) / math.sqrt(200))
    assert abs(mean - predicted) < 4 * se + 0.5, (mean, se, predicted)


def test_the_fitness_reward_reaches_the_ceiling_and_design_a_reaches_zero() -> None:
    for layout in (NEAR, FAR):
        top = ceiling(layout)
        assert top > 40
        assert reward_optimum(FITNESS, layout).high == pytest.approx(top, rel=0.02)
        a = reward_optimum(DESIGN_A, layout)
        assert a.low == a.high == 0.0


def test_design_b_is_optimal_near_and_far_below_the_ceiling_far() -> None:
    assert reward_optimum(DESIGN_B, NEAR).high == pytest.approx(ceiling(NEAR), rel=0.02)
    far = reward_optimum(DESIGN_B, FAR).high
    assert 0.0 < far < 0.2 * ceiling(FAR)


def test_model_rows_are_distributions_and_drinking_quenches() -> None:
    model = build_model(NEAR)
    assert np.allclose(model.prob.sum(axis=2), 1.0)
    assert model.start.sum() == pytest.approx(1.0)
    water_cell = 0  # (0, 0)
    s = (water_cell * 2 + 1) * 2 + 1  # hungry, thirsty, on the water
    assert set(model.next_state[s, 5] % 2) == {0}  # DRINK: never thirsty after it


def test_unknown_component_and_bad_gamma_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown reward components"):
        reward_optimum({"thirst": 1.0}, NEAR)
    with pytest.raises(ValueError, match="gamma"):
        reward_optimum(FITNESS, NEAR, gamma=1.0)
