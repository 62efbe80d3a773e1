"""Tests of the Hungry-Thirsty environment (``livetune_rl.envs``): every transition rule on its
own, the layout, the observation, truncation, fitness, the reward components, seeding,
Gymnasium's env checker and the registered id.

Rule tests put the agent in a given state through the env's documented reset options
(``reset(options={"position": (x, y), "hungry": ..., "thirsty": ...})``), see :func:`start`.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import livetune_rl.envs
from livetune_rl.envs import REWARD_COMPONENTS, HungryThirstyEnv
from livetune_rl.envs.hungry_thirsty import Action

UP, DOWN, LEFT, RIGHT, EAT, DRINK = (int(a) for a in Action)
FOOD, WATER = (0, 0), (3, 3)
N = 16  # position one-hot size on the 4x4 grid
HUNGRY, THIRSTY = N, N + 1  # indexes of the flags in the observation
CORNERS = [(0, 0), (3, 0), (0, 3), (3, 3)]

# The spec's walls, written out independently of the env's table.
BLOCKED = {
    ((0, 2), UP), ((1, 2), UP), ((2, 2), UP),
    ((0, 1), DOWN), ((1, 1), DOWN), ((2, 1), DOWN),
    ((2, 1), LEFT), ((2, 3), LEFT),
    ((1, 1), RIGHT), ((1, 3), RIGHT),
}
DELTA = {UP: (0, -1), DOWN: (0, 1), LEFT: (-1, 0), RIGHT: (1, 0)}

# The env checker's two notes about the unbounded Box that the spec asks for (Gaussian noise
# makes the observation genuinely unbounded); every other warning is an error in these tests.
UNBOUNDED_BOX = r".*A Box observation space (minimum|maximum) value is"


def make(**kwargs: Any) -> HungryThirstyEnv:
    """A noise-free env with food at (0, 0) and water at (3, 3) unless overridden."""
    kwargs.setdefault("layout", (FOOD, WATER))
    kwargs.setdefault("noise_std", 0.0)
    return HungryThirstyEnv(**kwargs)


def start(env: HungryThirstyEnv, position: tuple[int, int], *, hungry: bool = False,
          thirsty: bool = False, seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Start an episode in a given state through the env's documented reset options."""
    return env.reset(seed=seed, options={"position": position, "hungry": hungry,
                                         "thirsty": thirsty})


def step(env: HungryThirstyEnv, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
    obs, reward, terminated, truncated, info = env.step(action)
    return obs, float(reward), terminated, truncated, info


# ---------------------------------------------------------------------------- movement
@pytest.mark.parametrize(("cell", "action"), sorted(BLOCKED))
def test_every_listed_wall_blocks(cell: tuple[int, int], action: int) -> None:
    env = make()
    start(env, cell)
    obs, *_, info = step(env, action)
    assert info["position"] == cell
    assert obs[cell[1] * 4 + cell[0]] == 1.0


@pytest.mark.parametrize(("cell", "action", "expected"), [
    ((0, 0), DOWN, (0, 1)),
    ((0, 1), RIGHT, (1, 1)),
    ((2, 1), RIGHT, (3, 1)),   # only LEFT is blocked from (2, 1)
    ((3, 1), DOWN, (3, 2)),    # the gap in the horizontal wall
    ((3, 2), UP, (3, 1)),
    ((2, 2), LEFT, (1, 2)),    # no wall between (1, 2) and (2, 2)
    ((1, 2), RIGHT, (2, 2)),
    ((1, 0), RIGHT, (2, 0)),
    ((2, 0), LEFT, (1, 0)),
    ((0, 2), DOWN, (0, 3)),
    ((0, 3), UP, (0, 2)),
])
def test_allowed_moves(cell: tuple[int, int], action: int, expected: tuple[int, int]) -> None:
    env = make()
    start(env, cell)
    obs, *_, info = step(env, action)
    assert info["position"] == expected
    assert obs[expected[1] * 4 + expected[0]] == 1.0 and obs[:N].sum() == 1.0


@pytest.mark.parametrize(("cell", "action"), [
    ((0, 0), UP), ((0, 0), LEFT), ((3, 0), UP), ((3, 0), RIGHT),
    ((0, 3), DOWN), ((0, 3), LEFT), ((3, 3), DOWN), ((3, 3), RIGHT),
    ((1, 0), UP), ((3, 2), RIGHT), ((2, 3), DOWN), ((0, 1), LEFT),
])
def test_off_grid_moves_stay(cell: tuple[int, int], action: int) -> None:
    env = make()
    start(env, cell)
    assert step(env, action)[-1]["position"] == cell


def test_whole_transition_table_matches_spec() -> None:
    env = make()
    for y in range(4):
        for x in range(4):
            for action in (UP, DOWN, LEFT, RIGHT, EAT, DRINK):
                start(env, (x, y))
                if action in DELTA and ((x, y), action) not in BLOCKED:
                    nx, ny = x + DELTA[action][0], y + DELTA[action][1]
                    expected = (nx, ny) if 0 <= nx < 4 and 0 <= ny < 4 else (x, y)
                else:
                    expected = (x, y)
                info = step(env, action)[-1]
                assert info["position"] == expected, (x, y, Action(action))
                assert env.transitions[y * 4 + x, action] == expected[1] * 4 + expected[0]


def test_moves_neither_eat_nor_drink() -> None:
    env = make(thirst_prob=0.0)
    start(env, FOOD)
    info = step(env, RIGHT)[-1]
    assert (info["ate"], info["drank"], info["hungry"]) == (False, False, True)
    start(env, WATER, thirsty=True)
    info = step(env, LEFT)[-1]
    assert (info["ate"], info["drank"], info["thirsty"]) == (False, False, True)


# ---------------------------------------------------------------------------- eat / drink
def test_eat_on_food_when_not_thirsty() -> None:
    env = make(thirst_prob=0.0)
    start(env, FOOD, hungry=True)
    obs, reward, _, _, info = step(env, EAT)
    assert info["ate"] is True and info["hungry"] is False and info["fitness"] == 1
    assert info["position"] == FOOD and obs[HUNGRY] == 0.0
    assert reward == 0.0  # the reward is of the pre-step state: hungry


def test_eat_fails_when_thirsty() -> None:
    env = make(thirst_prob=0.0)
    start(env, FOOD, thirsty=True)
    info = step(env, EAT)[-1]
    assert info["ate"] is False and info["hungry"] is True and info["fitness"] == 0
    assert info["thirsty"] is True


@pytest.mark.parametrize("cell", [(3, 0), (0, 3), WATER, (1, 1), (0, 1)])
def test_eat_fails_off_food(cell: tuple[int, int]) -> None:
    env = make(thirst_prob=0.0)
    start(env, cell)
    info = step(env, EAT)[-1]
    assert info["ate"] is False and info["hungry"] is True


def test_eat_uses_pre_step_thirst() -> None:
    """thirst_prob=1 makes the agent thirsty after the step, yet it ate: it was not before."""
    env = make(thirst_prob=1.0)
    start(env, FOOD)
    info = step(env, EAT)[-1]
    assert info["ate"] is True and info["hungry"] is False and info["thirsty"] is True
    info = step(env, EAT)[-1]  # now thirsty before the step: eating fails
    assert info["ate"] is False and info["hungry"] is True


def test_drink_on_water() -> None:
    env = make(thirst_prob=1.0)  # would become thirsty on any step without drinking
    start(env, WATER, thirsty=True)
    obs, *_, info = step(env, DRINK)
    assert info["drank"] is True and info["thirsty"] is False and obs[THIRSTY] == 0.0
    start(env, WATER)  # drinking also succeeds when not thirsty
    info = step(env, DRINK)[-1]
    assert info["drank"] is True and info["thirsty"] is False


@pytest.mark.parametrize("cell", [FOOD, (3, 0), (2, 3)])
def test_drink_fails_off_water(cell: tuple[int, int]) -> None:
    env = make(thirst_prob=0.0)
    start(env, cell, thirsty=True)
    info = step(env, DRINK)[-1]
    assert info["drank"] is False and info["thirsty"] is True


def test_drink_then_eat() -> None:
    """The intended loop: drink at the water, walk to the food, eat."""
    env = make(layout=((0, 0), (3, 0)), thirst_prob=0.0)
    start(env, (3, 0), thirsty=True)
    assert step(env, DRINK)[-1]["thirsty"] is False
    for _ in range(3):
        step(env, LEFT)
    info = step(env, EAT)[-1]
    assert info["position"] == (0, 0) and info["ate"] is True and info["fitness"] == 1


def test_hungry_every_step_unless_just_ate() -> None:
    env = make(thirst_prob=0.0)
    start(env, FOOD)  # starts not hungry
    hungry = [step(env, a)[-1]["hungry"] for a in (EAT, EAT, RIGHT, EAT, DOWN, DRINK, LEFT)]
    # EAT on food -> fed; EAT again -> fed; move -> hungry; EAT at (1, 0) -> hungry; ...
    assert hungry == [False, False, True, True, True, True, True]
    info = step(env, UP)[-1]  # back on the food at (0, 0)
    assert info["position"] == FOOD and info["hungry"] is True
    assert step(env, EAT)[-1]["hungry"] is False


# ---------------------------------------------------------------------------- thirst
def test_thirst_persists_until_drink() -> None:
    env = make(thirst_prob=0.0)
    start(env, (2, 3), thirsty=True)
    for action in (EAT, DRINK, UP, DOWN, RIGHT):  # ends on the water (3, 3), not yet drunk
        assert step(env, action)[-1]["thirsty"] is True
    assert step(env, DRINK)[-1]["thirsty"] is False
    assert step(env, LEFT)[-1]["thirsty"] is False  # thirst_prob 0: never again


def test_thirst_prob_zero_never_thirsty() -> None:
    env = make(thirst_prob=0.0)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    assert not any(step(env, int(a))[-1]["thirsty"] for a in rng.integers(0, 4, size=200))


def test_thirst_prob_one_always_thirsty_after_a_step() -> None:
    env = make(thirst_prob=1.0)
    for seed in range(20):
        start(env, (1, 1), seed=seed)
        assert step(env, UP)[-1]["thirsty"] is True


@pytest.mark.parametrize("prob", [0.1, 0.3])
def test_thirst_frequency(prob: float) -> None:
    env = make(thirst_prob=prob)
    env.reset(seed=123)
    n = 4000
    count = 0
    for _ in range(n):
        env.reset(options={"position": (1, 1)})  # not thirsty before each step
        count += step(env, UP)[-1]["thirsty"]
    assert abs(count / n - prob) < 4 * np.sqrt(prob * (1 - prob) / n)


# ---------------------------------------------------------------------------- layout
def test_layout_distinct_corners_and_all_reachable() -> None:
    seen = set()
    for seed in range(200):
        food, water = HungryThirstyEnv(layout_seed=seed).get_layout()  # type: ignore[misc]
        assert food in CORNERS and water in CORNERS and food != water
        seen.add((food, water))
    assert len(seen) == 12  # every ordered pair of different corners occurs


def test_layout_kept_across_resets() -> None:
    env = HungryThirstyEnv()
    assert env.get_layout() is None  # drawn lazily at the first reset
    _, info = env.reset(seed=5)
    layout = env.get_layout()
    assert layout is not None and (info["food"], info["water"]) == layout
    for seed in range(30):
        _, info = env.reset(seed=seed)
        assert env.get_layout() == layout and (info["food"], info["water"]) == layout
        info = env.step(EAT)[-1]
        assert (info["food"], info["water"]) == layout


def test_lazy_layout_depends_on_the_first_reset_seed() -> None:
    layouts = set()
    for seed in range(40):
        env = HungryThirstyEnv()
        env.reset(seed=seed)
        twin = HungryThirstyEnv()
        twin.reset(seed=seed)
        assert env.get_layout() == twin.get_layout()
        layouts.add(env.get_layout())
    assert len(layouts) > 3


def test_same_layout_seed_shares_layout() -> None:
    layouts = {seed: HungryThirstyEnv(layout_seed=seed).get_layout() for seed in range(20)}
    for seed, layout in layouts.items():
        others = [HungryThirstyEnv(layout_seed=seed, observe_layout=True) for _ in range(3)]
        for i, other in enumerate(others):
            other.reset(seed=1000 + i)  # the episode seed does not change the layout
            assert other.get_layout() == layout
    assert len(set(layouts.values())) > 3
    expected = np.random.default_rng(7).choice(4, size=2, replace=False)
    assert HungryThirstyEnv(layout_seed=7).get_layout() == tuple(CORNERS[i] for i in expected)


def test_explicit_layout_wins_and_is_validated() -> None:
    env = HungryThirstyEnv(layout=((3, 0), (0, 3)), layout_seed=1)
    assert env.get_layout() == ((3, 0), (0, 3))
    with pytest.raises(ValueError, match="different corners"):
        HungryThirstyEnv(layout=((0, 0), (0, 0)))
    with pytest.raises(ValueError, match="corner"):
        HungryThirstyEnv(layout=((1, 1), (0, 0)))


def test_set_layout_moves_food_and_water() -> None:
    env = make(thirst_prob=0.0)
    env.set_layout((3, 0), (0, 3))
    assert env.get_layout() == ((3, 0), (0, 3))
    start(env, (0, 0))
    info = step(env, EAT)[-1]
    assert info["ate"] is False and (info["food"], info["water"]) == ((3, 0), (0, 3))
    start(env, (3, 0))
    assert step(env, EAT)[-1]["ate"] is True
    start(env, (0, 3), thirsty=True)
    assert step(env, DRINK)[-1]["drank"] is True
    env.reset(seed=9)
    assert env.get_layout() == ((3, 0), (0, 3))  # kept across resets
    with pytest.raises(ValueError):
        env.set_layout((3, 0), (3, 0))


def test_set_layout_through_a_vector_env() -> None:
    vec = gym.vector.SyncVectorEnv([lambda: HungryThirstyEnv() for _ in range(2)])
    vec.reset(seed=0)
    vec.call("set_layout", (0, 3), (3, 0))
    assert vec.call("get_layout") == (((0, 3), (3, 0)), ((0, 3), (3, 0)))
    vec.close()


# ---------------------------------------------------------------------------- observation
def test_observation_one_hot_without_noise() -> None:
    env = make()
    obs, _ = start(env, (2, 1), hungry=True, thirsty=False)
    assert obs.shape == (18,) and obs.dtype == np.float32
    expected = np.zeros(18, dtype=np.float32)
    expected[1 * 4 + 2] = 1.0
    expected[HUNGRY] = 1.0
    np.testing.assert_array_equal(obs, expected)
    obs, *_ = step(env, RIGHT)  # -> (3, 1), still hungry; thirsty depends on the rng
    assert obs[1 * 4 + 3] == 1.0 and obs[:N].sum() == 1.0 and obs[HUNGRY] == 1.0
    assert env.observation_space.shape == (18,) and env.observation_space.dtype == np.float32
    assert obs in env.observation_space


def test_observation_noise_statistics() -> None:
    env = HungryThirstyEnv(layout=(FOOD, WATER))  # default noise_std 0.05
    clean = make()
    obs, info = env.reset(seed=0)
    residuals = []
    for _ in range(400):
        expected, _ = clean.reset(options={"position": info["position"],
                                           "hungry": info["hungry"], "thirsty": info["thirsty"]})
        residuals.append(obs - expected)
        obs, _, _, _, info = env.step(int(env.np_random.integers(6)))
    res = np.concatenate(residuals)
    assert obs.dtype == np.float32
    assert abs(res.mean()) < 0.005 and 0.045 < res.std() < 0.055
    assert np.all(res != 0.0)


def test_observe_layout() -> None:
    env = make(observe_layout=True, layout=((3, 0), (0, 3)))
    assert env.observation_space.shape == (26,)
    obs, _ = start(env, (0, 0))
    assert obs.shape == (26,)
    np.testing.assert_array_equal(obs[18:22], [0, 1, 0, 0])  # food (3, 0): corner 1
    np.testing.assert_array_equal(obs[22:26], [0, 0, 1, 0])  # water (0, 3): corner 2
    env.set_layout((3, 3), (0, 0))
    obs = step(env, UP)[0]
    np.testing.assert_array_equal(obs[18:], [0, 0, 0, 1, 1, 0, 0, 0])


# ---------------------------------------------------------------------------- episode
def test_truncation_at_exactly_max_steps() -> None:
    env = HungryThirstyEnv(layout_seed=0)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for t in range(1, 201):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(6)))
        assert terminated is False
        assert truncated is (t == 200), t
    env = HungryThirstyEnv(layout_seed=0, max_steps=5)
    env.reset(seed=0)
    assert [env.step(UP)[3] for _ in range(5)] == [False] * 4 + [True]


def test_fitness_counts_steps_not_hungry() -> None:
    env = make(thirst_prob=0.0)
    start(env, FOOD)
    actions = [EAT] * 5 + [RIGHT, EAT, LEFT, EAT, EAT]
    fitness = [step(env, a)[-1]["fitness"] for a in actions]
    assert fitness == [1, 2, 3, 4, 5, 5, 5, 5, 6, 7]
    env.reset(seed=1)
    assert env.reset(seed=1)[1]["fitness"] == 0  # a new episode starts from 0


def test_fitness_over_random_episodes() -> None:
    env = make(layout=((0, 0), (3, 0)), thirst_prob=0.05)
    rng = np.random.default_rng(1)
    total = 0
    for seed in range(5):
        env.reset(seed=seed)
        not_hungry, truncated = 0, False
        info: dict[str, Any] = {}
        while not truncated:
            _, _, _, truncated, info = env.step(int(rng.integers(6)))
            not_hungry += not info["hungry"]
            assert info["fitness"] == not_hungry
        total += info["fitness"]
    assert 0 < total < 5 * 200


# ---------------------------------------------------------------------------- reward
@pytest.mark.parametrize(("hungry", "thirsty", "name"), [
    (True, True, "hungry_thirsty"),
    (True, False, "hungry_not_thirsty"),
    (False, True, "not_hungry_thirsty"),
    (False, False, "not_hungry_not_thirsty"),
])
def test_reward_components_one_hot_of_pre_step_state(hungry: bool, thirsty: bool,
                                                     name: str) -> None:
    env = make(thirst_prob=1.0)
    start(env, FOOD, hungry=hungry, thirsty=thirsty)
    # EAT changes the state (fed unless thirsty, thirsty after): components keep the pre-step.
    _, reward, _, _, info = step(env, EAT)
    assert info["reward_components"] == {c: float(c == name) for c in REWARD_COMPONENTS}
    assert list(info["reward_components"]) == list(REWARD_COMPONENTS)
    assert reward == (1.0 if name.startswith("not_hungry") else 0.0)


def test_default_reward_over_a_sequence() -> None:
    env = make(thirst_prob=0.0)
    start(env, FOOD, hungry=True)
    rewards = [step(env, a)[1] for a in (EAT, EAT, RIGHT, LEFT, EAT)]
    # pre-step hungry?  yes,  no,  no,  yes,  yes
    assert rewards == [0.0, 1.0, 1.0, 0.0, 0.0]
    assert env.reward_weights == {"hungry_thirsty": 0.0, "hungry_not_thirsty": 0.0,
                                  "not_hungry_thirsty": 1.0, "not_hungry_not_thirsty": 1.0}


def test_custom_reward_weights() -> None:
    weights = {"hungry_thirsty": -1.0, "hungry_not_thirsty": -0.5, "not_hungry_thirsty": 0.25}
    env = make(thirst_prob=0.0, reward_weights=weights)
    for (hungry, thirsty), expected in {(True, True): -1.0, (True, False): -0.5,
                                        (False, True): 0.25, (False, False): 0.0}.items():
        start(env, (1, 1), hungry=hungry, thirsty=thirsty)
        assert step(env, UP)[1] == expected
    with pytest.raises(ValueError, match="unknown reward components"):
        make(reward_weights={"hungry": 1.0})


def test_reset_info() -> None:
    env = HungryThirstyEnv(layout_seed=0)
    obs, info = env.reset(seed=0)
    assert set(info) == {"hungry", "thirsty", "fitness", "reward_components", "position", "ate",
                         "drank", "food", "water"}
    assert info["reward_components"] == dict.fromkeys(REWARD_COMPONENTS, 0.0)
    assert (info["hungry"], info["thirsty"], info["fitness"]) == (False, False, 0)
    assert (info["ate"], info["drank"]) == (False, False)
    assert (info["food"], info["water"]) == env.get_layout()
    x, y = info["position"]
    assert int(np.argmax(obs[:N])) == y * 4 + x
    step_info = env.step(UP)[-1]
    assert set(step_info) == set(info)


def test_start_cell_uniform_and_state_fresh() -> None:
    env = HungryThirstyEnv(layout_seed=0)
    env.reset(seed=0)
    counts = np.zeros(16)
    for _ in range(3200):
        _, info = env.reset()
        x, y = info["position"]
        counts[y * 4 + x] += 1
        assert info["hungry"] is False and info["thirsty"] is False
    assert counts.min() > 120 and counts.max() < 280  # expected 200 each


def test_reset_options_are_validated() -> None:
    env = make()
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"pos": (0, 0)})
    with pytest.raises(ValueError, match="outside"):
        env.reset(options={"position": (4, 0)})


def test_invalid_action_and_step_before_reset() -> None:
    env = make()
    with pytest.raises(gym.error.ResetNeeded):
        env.step(UP)
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(6)


# ---------------------------------------------------------------------------- seeding
def _rollout(env: gym.Env, seed: int, actions: list[int]) -> list[Any]:
    out: list[Any] = [env.reset(seed=seed)]
    out += [env.step(a) for a in actions]
    return out


def test_seeded_reproducibility() -> None:
    actions = [int(a) for a in np.random.default_rng(0).integers(6, size=300)]
    env = HungryThirstyEnv(layout_seed=2)
    first = _rollout(env, 11, actions)
    again = _rollout(env, 11, actions)
    other = _rollout(HungryThirstyEnv(layout_seed=2), 11, actions)
    for a, b, c in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[0], c[0])
        assert a[1:] == b[1:] == c[1:]
    different = _rollout(env, 12, actions)
    assert not np.array_equal(first[0][0], different[0][0])


def test_first_reset_is_as_reproducible_as_later_ones() -> None:
    """A lazily drawn layout must not shift the random stream of the first reset."""
    env = HungryThirstyEnv()
    obs1, info1 = env.reset(seed=123)
    obs2, info2 = env.reset(seed=123)
    np.testing.assert_array_equal(obs1, obs2)
    assert info1 == info2


# ---------------------------------------------------------------------------- gymnasium
@pytest.mark.parametrize("kwargs", [
    {}, {"layout_seed": 3}, {"observe_layout": True}, {"noise_std": 0.0},
    {"render_mode": "ansi"}, {"render_mode": "rgb_array"},
])
def test_check_env(kwargs: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=UNBOUNDED_BOX)
        check_env(gym.make("livetune/HungryThirsty-v0", **kwargs).unwrapped)


def test_gymnasium_make() -> None:
    env = gym.make("livetune/HungryThirsty-v0", layout_seed=0)
    assert env.spec is not None and env.spec.max_episode_steps is None  # the env truncates
    assert isinstance(env.unwrapped, HungryThirstyEnv)
    assert env.unwrapped.get_layout() == HungryThirstyEnv(layout_seed=0).get_layout()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (18,)
    truncated, steps = False, 0
    while not truncated:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        steps += 1
    assert steps == 200
    env.close()
    assert gym.make("livetune/HungryThirsty-v0", observe_layout=True).observation_space.shape \
        == (26,)


def test_reimport_does_not_reregister() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(livetune_rl.envs)
    assert "livetune/HungryThirsty-v0" in gym.registry


def test_render_ansi() -> None:
    env = make(render_mode="ansi")
    start(env, (1, 1), hungry=True)
    text = env.render()
    assert isinstance(text, str)
    lines = text.splitlines()
    assert lines[:9] == [
        "+---+---+---+---+",
        "| F   .   .   . |",
        "+   +   +   +   +",
        "| .   A | .   . |",
        "+---+---+---+   +",
        "| .   .   .   . |",
        "+   +   +   +   +",
        "| .   . | .   W |",
        "+---+---+---+---+",
    ]
    assert "hungry" in lines[9] and "fitness 0" in lines[9]
    start(env, FOOD)
    assert env.render().splitlines()[1] == "| AF  .   .   . |"  # type: ignore[union-attr]


def test_render_rgb_array() -> None:
    env = make(render_mode="rgb_array")
    start(env, (1, 1), hungry=True)
    image = env.render()
    assert isinstance(image, np.ndarray) and image.shape == (64, 64, 3)
    assert image.dtype == np.uint8
    assert tuple(image[2, 2]) == (60, 180, 75)  # food at (0, 0)
    assert tuple(image[56, 56]) == (0, 130, 200)  # water at (3, 3)
    assert tuple(image[24, 24]) == (130, 0, 0)  # hungry agent at (1, 1)
    assert tuple(image[31, 8]) == (0, 0, 0)  # wall below (0, 1)
    assert tuple(image[8, 31]) == (255, 255, 255)  # no wall right of (1, 0)
    assert tuple(image[24, 31]) == (0, 0, 0)  # wall right of (1, 1)


def test_sb3_style_make_with_rgb_array() -> None:
    """SB3's make_vec_env(env_id) always asks gym.make for render_mode="rgb_array"."""
    env = gym.make("livetune/HungryThirsty-v0", render_mode="rgb_array", layout_seed=0)
    env.reset(seed=0)
    assert env.render().shape == (64, 64, 3)  # type: ignore[union-attr]


def test_render_without_mode_returns_none() -> None:
    env = make()
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert env.render() is None


# ---------------------------------------------------------------------------- other grids
def test_other_sizes_and_custom_walls() -> None:
    env = make(size=5, layout=((0, 0), (4, 4)))
    assert env.observation_space.shape == (27,)
    start(env, (1, 1))
    assert step(env, DOWN)[-1]["position"] == (1, 2)  # no built-in walls on 5x5
    walled = make(size=5, layout=((0, 0), (4, 4)), walls={(1, 1, DOWN), (4, 4, UP)})
    start(walled, (1, 1))
    assert step(walled, DOWN)[-1]["position"] == (1, 1)
    mapped = make(size=5, layout=((0, 0), (4, 4)), walls={(1, 1): [DOWN, RIGHT]})
    start(mapped, (1, 1))
    assert step(mapped, RIGHT)[-1]["position"] == (1, 1)
    assert step(mapped, LEFT)[-1]["position"] == (0, 1)
    open_grid = make(walls=())
    start(open_grid, (1, 1))
    assert step(open_grid, DOWN)[-1]["position"] == (1, 2)
    with pytest.raises(ValueError):
        make(walls={(0, 0, EAT)})
    with pytest.raises(ValueError):
        make(walls={(4, 0, UP)})
    with pytest.raises(ValueError, match="corner"):
        make(size=5, layout=((0, 0), (3, 3)))
