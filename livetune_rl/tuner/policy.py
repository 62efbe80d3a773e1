"""The tuner's decision rule: hill climbing on live variables, driven by an observed metric.

Pure logic, no network: feed it each evaluation's metric with :meth:`HillClimbPolicy.observe`
and it answers with the change to make, if any.

The rule, in words:

1. **Stall**: the metric has not improved by ``min_delta`` over the last ``patience``
   evaluations (compared with the best before them) and is below ``target``.
2. **Try**: move one tunable variable (chosen in a seeded random order among the moves not yet
   tried from the current point) up or down by ``step`` x its range (x2 per ``step`` on a
   log scale for positive variables spanning 3+ decades, such as a learning rate), clipped to
   its bounds.
3. **Judge**: after ``settle`` evaluations, keep the change if their mean beats the mean
   before it by ``min_delta``; otherwise revert it and remember the move as tried.
4. When every move from the current point was tried, double the step (up to the whole range).
5. At most ``max_actions`` changes in all.

Example::

    >>> from livetune_rl.registry import Registry, LiveVariable
    >>> reg = Registry()
    >>> _ = LiveVariable("reward.food", 0.0, min=-1.0, max=1.0, registry=reg)
    >>> policy = HillClimbPolicy(PolicyConfig(patience=1, settle=1), reg.state().variables)
    >>> policy.observe(0.0, {"reward.food": 0.0}) is None     # first evaluation: a baseline
    True
    >>> policy.observe(0.0, {"reward.food": 0.0}).kind         # stalled: try a move
    'set'
"""

from __future__ import annotations

import fnmatch
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..registry import VariableState
from ..values import Value, VarType


@dataclass
class PolicyConfig:
    """What the tuner watches, when it acts and how far it moves."""

    metric: str = "mean_fitness"
    knobs: tuple[str, ...] = ("reward.*",)
    patience: int = 2
    settle: int = 2
    min_delta: float = 1.0
    step: float = 0.25
    target: float | None = None
    max_actions: int = 50
    seed: int = 0


@dataclass(frozen=True)
class Action:
    """A change the tuner wants: ``set`` tries a move, ``revert`` undoes a failed one."""

    kind: Literal["set", "revert"]
    values: dict[str, float]
    reason: str


@dataclass
class _Tunable:
    name: str
    low: float
    high: float
    integer: bool
    log: bool

    def moved(self, value: float, direction: int, step: float) -> float:
        if self.log:
            new = value * 2.0 ** (direction * step * 4)
        else:
            new = value + direction * step * (self.high - self.low)
        new = min(self.high, max(self.low, new))
        return float(round(new)) if self.integer else float(new)


@dataclass
class _Trial:
    move: tuple[str, int]
    before: dict[str, float]
    baseline: float
    scores: list[float] = field(default_factory=list)


def tunables(variables: Sequence[VariableState], patterns: Sequence[str]) -> list[_Tunable]:
    """The bounded numeric variables whose names match ``patterns``."""
    found = []
    for var in variables:
        if var.type not in (VarType.FLOAT, VarType.INT) or var.min is None or var.max is None:
            continue
        if not any(fnmatch.fnmatchcase(var.name, p) for p in patterns):
            continue
        low, high = float(var.min), float(var.max)  # type: ignore[arg-type]
        log = low > 0 and high / low >= 1e3
        found.append(_Tunable(var.name, low, high, var.type is VarType.INT, log))
    return found


class HillClimbPolicy:
    """Stall-triggered, one-variable-at-a-time hill climbing with revert (see module doc)."""

    def __init__(self, config: PolicyConfig, variables: Sequence[VariableState]) -> None:
        self.config = config
        self.tunables = {t.name: t for t in tunables(variables, config.knobs)}
        self.history: list[float] = []
        self.trial: _Trial | None = None
        self.tried: set[tuple[str, int]] = set()
        self.step = config.step
        self.actions = 0
        self._rng = random.Random(config.seed)

    def _stalled(self) -> bool:
        c, h = self.config, self.history
        if len(h) <= c.patience:
            return False
        if c.target is not None and h[-1] >= c.target:
            return False
        return max(h[-c.patience:]) < max(h[:-c.patience]) + c.min_delta

    def _next_move(self, values: Mapping[str, Value]) -> tuple[tuple[str, int], float] | None:
        for _ in range(2):
            moves = [(n, d) for n in sorted(self.tunables) for d in (1, -1)
                     if (n, d) not in self.tried]
            self._rng.shuffle(moves)
            for name, direction in moves:
                current = float(values[name])  # type: ignore[arg-type]
                new = self.tunables[name].moved(current, direction, self.step)
                if not math.isclose(new, current, rel_tol=1e-9, abs_tol=1e-12):
                    return (name, direction), new
                self.tried.add((name, direction))
            if self.step >= 1.0:
                return None
            self.step = min(1.0, self.step * 2)  # every move from here tried: look further
            self.tried.clear()
        return None

    def forget(self) -> None:
        """Drop the current trial (someone else changed a variable under us)."""
        self.trial = None
        self.history.clear()

    def observe(self, metric: float, values: Mapping[str, Value]) -> Action | None:
        """Record one evaluation; return the change to make now, if any."""
        c = self.config
        if self.trial is not None:
            self.trial.scores.append(metric)
            if len(self.trial.scores) < c.settle:
                return None
            trial, self.trial = self.trial, None
            score = sum(trial.scores) / len(trial.scores)
            if score >= trial.baseline + c.min_delta:
                self.tried.clear()  # a new point: every move is worth trying again
                self.history = list(trial.scores)
                return None
            self.tried.add(trial.move)
            self.history.append(metric)
            self.actions += 1
            name = trial.move[0]
            return Action("revert", {name: trial.before[name]},
                          f"{name} move gave {score:.3g}, not better than "
                          f"{trial.baseline:.3g} + {c.min_delta}: reverted")
        self.history.append(metric)
        if not self.tunables or self.actions >= c.max_actions or not self._stalled():
            return None
        chosen = self._next_move(values)
        if chosen is None:
            return None
        (name, direction), new = chosen
        before = {n: float(values[n]) for n in self.tunables}  # type: ignore[arg-type]
        window = self.history[-c.settle:]
        self.trial = _Trial((name, direction), before, sum(window) / len(window))
        self.actions += 1
        return Action("set", {name: new},
                      f"{c.metric} stalled at {metric:.3g} for {c.patience} evaluations: "
                      f"trying {name} {before[name]:.4g} -> {new:.4g}")
