"""Hungry-Thirsty: the reward-design gridworld of Singh, Lewis & Barto (2009).

This is the environment of the reward-design study of Booth et al.: a designer wants an agent
that is rarely hungry, but the agent can only eat when it is not thirsty, so a good reward has
to make it drink too.

Dynamics (all rules are evaluated on the *pre-step* state):

* A ``size`` x ``size`` grid (4 by default), coordinates ``(x, y)`` with ``y`` growing
  downwards. On the 4x4 grid internal walls block UP from (0,2), (1,2), (2,2); DOWN from
  (0,1), (1,1), (2,1); LEFT from (2,1), (2,3); RIGHT from (1,1), (1,3). Moving off the grid
  or into a wall leaves the agent in place.
* Food and water sit in two different corners. The layout is drawn once per env instance and
  kept across resets (see :class:`HungryThirstyEnv` for how it is chosen).
* Every episode starts on a uniformly random cell, not hungry and not thirsty.
* EAT succeeds only on the food cell and only when not thirsty; DRINK succeeds on the water
  cell. After the step the agent is hungry unless it ate on this step; it is not thirsty if it
  drank on this step, otherwise it stays thirsty or becomes thirsty with ``thirst_prob``.
* The episode is truncated by the env itself on step ``max_steps`` (200); it never
  terminates.
* Fitness, the designer's true objective, counts the steps of the episode after which the
  agent is not hungry (0..200); it is reported in ``info["fitness"]``.

Example::

    >>> import gymnasium as gym
    >>> import livetune_rl.envs                       # registers livetune/HungryThirsty-v0
    >>> env = gym.make("livetune/HungryThirsty-v0", layout_seed=0)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape
    (18,)
    >>> obs, reward, terminated, truncated, info = env.step(Action.EAT)
    >>> sorted(info["reward_components"]) == sorted(REWARD_COMPONENTS)
    True
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from enum import IntEnum
from typing import Any, SupportsFloat, SupportsInt

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = [
    "DEFAULT_REWARD_WEIGHTS",
    "FOUR_BY_FOUR_WALLS",
    "REWARD_COMPONENTS",
    "Action",
    "Corner",
    "HungryThirstyEnv",
]

Corner = tuple[int, int]
"""A cell ``(x, y)``; for the layout, one of the four corners of the grid."""


class Action(IntEnum):
    """The 6 discrete actions of Hungry-Thirsty."""

    UP = 0
    DOWN = 1
    LEFT = 2
    RIGHT = 3
    EAT = 4
    DRINK = 5


REWARD_COMPONENTS: tuple[str, ...] = (
    "hungry_thirsty",
    "hungry_not_thirsty",
    "not_hungry_thirsty",
    "not_hungry_not_thirsty",
)
"""Names of the reward components: a one-hot of the pre-step ``(hungry, thirsty)`` state."""

DEFAULT_REWARD_WEIGHTS: Mapping[str, float] = {
    "hungry_thirsty": 0.0,
    "hungry_not_thirsty": 0.0,
    "not_hungry_thirsty": 1.0,
    "not_hungry_not_thirsty": 1.0,
}
"""The env's own reward: +1 for every step begun not hungry, whatever the thirst.

This is the fitness-aligned reward: it rewards exactly what the designer's true objective
(fitness, the steps on which the agent is not hungry) counts, so a plain run of an RL library
optimizes the real goal. A live reward-shaping wrapper
(:class:`livetune_rl.wrappers.LiveRewardWrapper`) replaces it with its own weights of
``info["reward_components"]``."""

FOUR_BY_FOUR_WALLS: frozenset[tuple[int, int, int]] = frozenset(
    [(x, 2, Action.UP) for x in (0, 1, 2)]
    + [(x, 1, Action.DOWN) for x in (0, 1, 2)]
    + [(2, 1, Action.LEFT), (2, 3, Action.LEFT)]
    + [(1, 1, Action.RIGHT), (1, 3, Action.RIGHT)]
)
"""The built-in internal walls of the 4x4 grid, as blocked ``(x, y, action)`` moves."""

_MOVES: tuple[tuple[int, int], ...] = ((0, -1), (0, 1), (-1, 0), (1, 0))  # UP, DOWN, LEFT, RIGHT
_RESET_OPTIONS = frozenset({"position", "hungry", "thirsty"})

WallSpec = Collection[tuple[int, int, SupportsInt]] | Mapping[Corner, Iterable[SupportsInt]]
"""Blocked moves: ``{(x, y, action), ...}`` or ``{(x, y): [action, ...]}``."""


class HungryThirstyEnv(gym.Env[np.ndarray, np.int64]):
    """The Hungry-Thirsty gridworld (Singh, Lewis & Barto 2009).

    Observation (``float32``, ``Box(-inf, inf)``): a one-hot of the position (``size * size``
    values, index ``y * size + x``), then ``hungry`` and ``thirsty`` as 0/1: 18 values on the
    default grid. With ``observe_layout=True`` a one-hot of the food corner (4) and of the
    water corner (4) follow: 26 values. Corners are indexed (0, 0), (size-1, 0), (0, size-1),
    (size-1, size-1). Gaussian noise ``N(0, noise_std)`` drawn from the env's ``np_random`` is
    added to every value (``noise_std=0`` disables it).

    Actions: :class:`Action` (``Discrete(6)``): UP, DOWN, LEFT, RIGHT, EAT, DRINK.

    Reward: ``sum(weights[c] * components[c])`` over :data:`REWARD_COMPONENTS`, the one-hot of
    the pre-step (hungry, thirsty) state. The default weights (:data:`DEFAULT_REWARD_WEIGHTS`)
    are the fitness-aligned reward: 1 on every step begun not hungry, 0 otherwise.

    ``info`` on every reset and step: ``hungry``, ``thirsty`` (post-step, bools), ``fitness``
    (steps of this episode after which the agent was not hungry, int), ``reward_components``
    (``{name: float}`` of the pre-step state; all 0.0 on reset), ``position`` (``(x, y)``),
    ``ate``, ``drank`` (bools, this step) and ``food``, ``water`` (corners).

    Layout: ``layout=(food, water)`` fixes it; else ``layout_seed`` draws it at construction
    from ``np.random.default_rng(layout_seed)``, so instances built with the same seed share it
    (give every copy of a vectorized env and the eval env the same ``layout_seed``); else it is
    drawn from the env's ``np_random`` at the first :meth:`reset` and kept. Every reset draws a
    candidate layout (used only by the first), so ``reset(seed=s)`` consumes the same random
    numbers whether or not it is the first reset and stays reproducible. :meth:`set_layout`
    replaces the layout at any time.

    Args:
        render_mode: None, ``"ansi"`` (:meth:`render` returns a text grid) or
            ``"rgb_array"`` (a small ``uint8`` image; SB3's ``make_vec_env`` asks for this mode
            whenever it is given an env id).
        size: side of the square grid (>= 2).
        walls: blocked moves, either a collection of ``(x, y, action)`` or a mapping
            ``{(x, y): actions}``. None: :data:`FOUR_BY_FOUR_WALLS` when ``size == 4``, no
            internal walls for any other size. Pass ``()`` for an open 4x4 grid.
        layout: explicit ``(food, water)`` corners, each ``(x, y)``.
        layout_seed: seed of the layout draw when ``layout`` is None.
        observe_layout: append the one-hot food and water corners to the observation.
        max_steps: the env returns ``truncated=True`` on this step (200).
        thirst_prob: probability of becoming thirsty on a step without drinking (0.1).
        noise_std: standard deviation of the observation noise (0.05; 0 disables it).
        reward_weights: weight of each component, names from :data:`REWARD_COMPONENTS`
            (missing ones weigh 0). None: :data:`DEFAULT_REWARD_WEIGHTS`.

    :meth:`reset` accepts ``options`` to start from a given state (tests, curricula):
    ``{"position": (x, y), "hungry": bool, "thirsty": bool}``, each optional; the unspecified
    parts start as usual (random cell, not hungry, not thirsty).

    Example::

        >>> env = HungryThirstyEnv(layout=((0, 0), (3, 3)), noise_std=0.0)
        >>> obs, info = env.reset(seed=1, options={"position": (0, 0)})
        >>> _, reward, _, _, info = env.step(Action.EAT)
        >>> info["ate"], info["hungry"], info["fitness"], reward
        (True, False, 1, 1.0)
    """

    metadata: dict[str, Any] = {  # noqa: RUF012
        "render_modes": ["ansi", "rgb_array"],
        "render_fps": 4,
    }

    def __init__(
        self,
        render_mode: str | None = None,
        *,
        size: int = 4,
        walls: WallSpec | None = None,
        layout: tuple[Corner, Corner] | None = None,
        layout_seed: int | None = None,
        observe_layout: bool = False,
        max_steps: int = 200,
        thirst_prob: float = 0.1,
        noise_std: float = 0.05,
        reward_weights: Mapping[str, float] | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of "
                             f"{self.metadata['render_modes']}, got {render_mode!r}")
        size = int(size)
        if size < 2:
            raise ValueError(f"size must be >= 2, got {size}")
        if int(max_steps) < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if not 0.0 <= float(thirst_prob) <= 1.0:
            raise ValueError(f"thirst_prob must be in [0, 1], got {thirst_prob}")
        if not float(noise_std) >= 0.0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.render_mode = render_mode
        self.size = size
        self.max_steps = int(max_steps)
        self.thirst_prob = float(thirst_prob)
        self.noise_std = float(noise_std)
        self.observe_layout = bool(observe_layout)
        self.corners: tuple[Corner, ...] = ((0, 0), (size - 1, 0), (0, size - 1),
                                            (size - 1, size - 1))
        self.n_cells = size * size

        # Walls and the transition table: next cell of every (cell, action); EAT/DRINK stay.
        self.blocked: np.ndarray = self._wall_table(walls)
        """``blocked[x, y, move]``: True where a wall blocks that move (UP, DOWN, LEFT, RIGHT)."""
        transitions = np.empty((self.n_cells, len(Action)), dtype=np.int64)
        for cell in range(self.n_cells):
            x, y = cell % size, cell // size
            transitions[cell, :] = cell
            for a, (dx, dy) in enumerate(_MOVES):
                nx, ny = x + dx, y + dy
                if 0 <= nx < size and 0 <= ny < size and not self.blocked[x, y, a]:
                    transitions[cell, a] = ny * size + nx
        self.transitions: np.ndarray = transitions
        """``transitions[cell, action]``: the next cell (``y * size + x``) of every action."""
        self._next: tuple[tuple[int, ...], ...] = tuple(map(tuple, transitions.tolist()))
        self._xy: tuple[Corner, ...] = tuple((c % size, c // size) for c in range(self.n_cells))

        # Reward: a weight per component index (0..3) and the matching one-hot info dicts.
        weights = dict(DEFAULT_REWARD_WEIGHTS) if reward_weights is None else dict(reward_weights)
        unknown = set(weights) - set(REWARD_COMPONENTS)
        if unknown:
            raise ValueError(f"unknown reward components {sorted(unknown)}; "
                             f"known: {list(REWARD_COMPONENTS)}")
        self._weights: tuple[float, ...] = tuple(float(weights.get(c, 0.0))
                                                 for c in REWARD_COMPONENTS)
        self._onehots: tuple[dict[str, float], ...] = tuple(
            {c: float(i == j) for j, c in enumerate(REWARD_COMPONENTS)}
            for i in range(len(REWARD_COMPONENTS)))

        self.obs_dim = self.n_cells + 2 + (8 if self.observe_layout else 0)
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32)
        self.action_space = spaces.Discrete(len(Action))

        # Layout (and the noise-free observation of every (cell, hungry, thirsty)).
        self._food: Corner | None = None
        self._water: Corner | None = None
        self._food_cell = -1
        self._water_cell = -1
        self._obs_table = np.zeros((self.n_cells, 2, 2, self.obs_dim), dtype=np.float32)
        if layout is not None:
            self.set_layout(*layout)
        elif layout_seed is not None:
            self.set_layout(*self._draw_layout(np.random.default_rng(layout_seed)))

        # Episode state (set by reset; cell -1 means "not reset yet").
        self._cell = -1
        self._hungry = False
        self._thirsty = False
        self._steps = 0
        self._fitness = 0
        self._ate = False
        self._drank = False

    # ------------------------------------------------------------------ setup
    def _wall_table(self, walls: WallSpec | None) -> np.ndarray:
        """``blocked[x, y, move]`` (bool) from the ``walls`` argument."""
        size = self.size
        if walls is None:
            walls = FOUR_BY_FOUR_WALLS if size == 4 else ()
        if isinstance(walls, Mapping):
            triples = [(xy[0], xy[1], a) for xy, acts in walls.items() for a in acts]
        else:
            triples = list(walls)
        blocked = np.zeros((size, size, len(_MOVES)), dtype=bool)
        for triple in triples:
            x, y, a = (int(v) for v in triple)
            if not (0 <= x < size and 0 <= y < size):
                raise ValueError(f"wall {tuple(triple)} is outside the {size}x{size} grid")
            if not 0 <= a < len(_MOVES):
                raise ValueError(f"wall {tuple(triple)}: the action must be a move "
                                 f"(UP, DOWN, LEFT or RIGHT)")
            blocked[x, y, a] = True
        return blocked

    def _draw_layout(self, rng: np.random.Generator) -> tuple[Corner, Corner]:
        food, water = rng.choice(len(self.corners), size=2, replace=False)
        return self.corners[int(food)], self.corners[int(water)]

    def _corner(self, corner: Iterable[SupportsInt], what: str) -> Corner:
        x, y = (int(v) for v in corner)
        if (x, y) not in self.corners:
            raise ValueError(f"{what} must be a corner of the grid {self.corners}, got {corner}")
        return x, y

    def get_layout(self) -> tuple[Corner, Corner] | None:
        """The ``(food, water)`` corners, or None while a lazily drawn layout is not drawn yet
        (no ``layout``/``layout_seed`` and no reset so far)."""
        if self._food is None or self._water is None:
            return None
        return self._food, self._water

    def set_layout(self, food: Iterable[SupportsInt], water: Iterable[SupportsInt]) -> None:
        """Put food and water in two different corners, now and for every later episode.

        A method so that vectorized envs can share one layout:
        ``vec_env.env_method("set_layout", food, water)``.
        """
        f, w = self._corner(food, "food"), self._corner(water, "water")
        if f == w:
            raise ValueError(f"food and water must be in different corners, both are {f}")
        self._food, self._water = f, w
        self._food_cell = f[1] * self.size + f[0]
        self._water_cell = w[1] * self.size + w[0]
        table, n = self._obs_table, self.n_cells
        table[:] = 0.0
        table[np.arange(n), :, :, np.arange(n)] = 1.0  # position one-hot
        table[:, 1, :, n] = 1.0  # hungry
        table[:, :, 1, n + 1] = 1.0  # thirsty
        if self.observe_layout:
            table[..., n + 2 + self.corners.index(f)] = 1.0
            table[..., n + 6 + self.corners.index(w)] = 1.0

    @property
    def reward_weights(self) -> dict[str, float]:
        """The weight of each component in the env's own reward."""
        return dict(zip(REWARD_COMPONENTS, self._weights, strict=True))

    # --------------------------------------------------------------- gym API
    def _obs(self) -> np.ndarray:
        base = self._obs_table[self._cell, int(self._hungry), int(self._thirsty)]
        if self.noise_std == 0.0:
            return base.copy()
        noise = self.np_random.standard_normal(self.obs_dim, dtype=np.float32)
        return base + np.float32(self.noise_std) * noise

    def _info(self, component: int) -> dict[str, Any]:
        return {
            "hungry": self._hungry,
            "thirsty": self._thirsty,
            "fitness": self._fitness,
            "reward_components": (dict.fromkeys(REWARD_COMPONENTS, 0.0) if component < 0
                                  else self._onehots[component].copy()),
            "position": self._xy[self._cell],
            "ate": self._ate,
            "drank": self._drank,
            "food": self._food,
            "water": self._water,
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode on a uniformly random cell, not hungry, not thirsty.

        ``options`` (each key optional) starts from a given state instead: ``position``
        (``(x, y)``), ``hungry`` (bool), ``thirsty`` (bool). Unknown keys raise ValueError.
        """
        super().reset(seed=seed)
        rng = self.np_random
        candidate = self._draw_layout(rng)  # drawn on every reset: same rng use on each
        if self._food is None:
            self.set_layout(*candidate)
        self._cell = int(rng.integers(self.n_cells))
        self._hungry = False
        self._thirsty = False
        if options:
            unknown = set(options) - _RESET_OPTIONS
            if unknown:
                raise ValueError(f"unknown reset options {sorted(unknown)}; "
                                 f"known: {sorted(_RESET_OPTIONS)}")
            if "position" in options:
                x, y = (int(v) for v in options["position"])
                if not (0 <= x < self.size and 0 <= y < self.size):
                    raise ValueError(f"position {(x, y)} is outside the {self.size}x"
                                     f"{self.size} grid")
                self._cell = y * self.size + x
            self._hungry = bool(options.get("hungry", False))
            self._thirsty = bool(options.get("thirsty", False))
        self._steps = 0
        self._fitness = 0
        self._ate = False
        self._drank = False
        return self._obs(), self._info(-1)

    def step(
        self, action: SupportsInt
    ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        a = int(action)
        if not 0 <= a < 6:
            raise ValueError(f"invalid action {action!r}: expected 0..5 (see Action)")
        cell = self._cell
        if cell < 0:
            raise gym.error.ResetNeeded("call reset() before step()")
        hungry, thirsty = self._hungry, self._thirsty
        component = (0 if hungry else 2) + (0 if thirsty else 1)  # pre-step state
        ate = a == 4 and cell == self._food_cell and not thirsty
        drank = a == 5 and cell == self._water_cell
        became_thirsty = self.np_random.random() < self.thirst_prob  # drawn on every step
        self._cell = self._next[cell][a]
        self._hungry = not ate
        self._thirsty = False if drank else (thirsty or became_thirsty)
        self._ate, self._drank = ate, drank
        if ate:
            self._fitness += 1
        self._steps += 1
        truncated = self._steps >= self.max_steps
        return self._obs(), self._weights[component], False, truncated, self._info(component)

    def render(self) -> str | np.ndarray | None:
        """``"ansi"``: a text grid, ``A`` agent, ``F`` food, ``W`` water, ``.`` empty, ``|`` and
        ``---`` walls, then a status line once reset. ``"rgb_array"``: an image of
        ``16 * size`` pixels square, food green, water blue, agent red (dark red when hungry),
        walls black."""
        if self.render_mode == "ansi":
            return self._ansi()
        if self.render_mode == "rgb_array":
            return self._rgb()
        gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' or "
                        "'rgb_array'")
        return None

    def _rgb(self, cell: int = 16) -> np.ndarray:
        size = self.size
        image = np.full((size * cell, size * cell, 3), 255, dtype=np.uint8)

        def paint(index: int, colour: tuple[int, int, int], pad: int = 0) -> None:
            x, y = self._xy[index]
            image[y * cell + pad:(y + 1) * cell - pad, x * cell + pad:(x + 1) * cell - pad] = colour

        if self._food_cell >= 0:
            paint(self._food_cell, (60, 180, 75))
            paint(self._water_cell, (0, 130, 200))
        if self._cell >= 0:
            paint(self._cell, (130, 0, 0) if self._hungry else (230, 25, 75), pad=cell // 4)
        for x, y, move in zip(*np.nonzero(self.blocked), strict=True):
            x0, y0 = int(x) * cell, int(y) * cell
            if move == Action.UP:
                image[y0:y0 + 1, x0:x0 + cell] = 0
            elif move == Action.DOWN:
                image[y0 + cell - 1:y0 + cell, x0:x0 + cell] = 0
            elif move == Action.LEFT:
                image[y0:y0 + cell, x0:x0 + 1] = 0
            else:
                image[y0:y0 + cell, x0 + cell - 1:x0 + cell] = 0
        return image

    def _ansi(self) -> str:
        size, blocked = self.size, self.blocked

        def label(cell: int) -> str:
            text = ("A" if cell == self._cell else "") + ("F" if cell == self._food_cell else "")
            text += "W" if cell == self._water_cell else ""
            return (text or ".").center(3)

        def wall_right(x: int, y: int) -> bool:
            return x == size - 1 or bool(blocked[x, y, Action.RIGHT] or
                                         blocked[x + 1, y, Action.LEFT])

        def wall_below(x: int, y: int) -> bool:
            return bool(blocked[x, y, Action.DOWN] or blocked[x, y + 1, Action.UP])

        border = "+" + "---+" * size
        lines = [border]
        for y in range(size):
            lines.append("|" + "".join(label(y * size + x) + ("|" if wall_right(x, y) else " ")
                                       for x in range(size)))
            if y < size - 1:
                lines.append("+" + "".join(("---" if wall_below(x, y) else "   ") + "+"
                                           for x in range(size)))
        lines.append(border)
        if self._cell >= 0:
            lines.append(f"step {self._steps}/{self.max_steps}  "
                         f"{'hungry' if self._hungry else 'not hungry'}, "
                         f"{'thirsty' if self._thirsty else 'not thirsty'}  "
                         f"fitness {self._fitness}")
        return "\n".join(lines) + "\n"
