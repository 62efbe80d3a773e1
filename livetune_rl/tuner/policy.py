"""The tuner's decision rule: hill climbing on live variables, driven by an observed metric.

Pure logic, no network: feed it each evaluation's metric with :meth:`HillClimbPolicy.observe`
and it answers with the change to make, if any.

The rule, in words:

1. **Stall**: the metric has not improved by ``min_delta`` over the last ``patience``
   evaluations (compared with the best before them) and is below ``target``.
2. **Try**: move ``width`` tunable variables at once (1 by default; 0 means all of them),
   each up or down by ``step`` x its range (x2 per ``step`` on a log scale for positive
   variables spanning 3+ decades, such as a learning rate), clipped to its bounds. The move
   (which variables, which directions) is drawn in a seeded random order among the moves not
   yet tried from the current point. Moving several at once matters when no single variable
   can change the outcome: a learner stuck in a habit the whole reward keeps it in.
   With ``credit`` (a per-episode key such as ``fitness``), the first move from a point is
   the *credit move* instead. The run's ``evaluate`` events carry, per training episode, the
   total of each reward term (``reward.<component>``, from ``LiveRewardWrapper``) and the
   credit key; over the last ``credit_window`` episodes the policy asks which weights would
   make the episode's reward track the credit key:

   * ``credit_rule="fit"`` (default): least squares, ``credit ~ sum(w_i * term_i)``, and the
     tunables are set to the fitted ``w`` scaled so the largest is the bound (the reward
     that best predicts the objective);
   * ``credit_rule="correlate"``: every tunable whose term co-varies with the credit key
     (Pearson ``|r| >= credit_min``) moves by ``step``, up when ``r > 0``, down when below.

   Random moves follow if the credit move is judged a failure.

   The credit move is *objective-aware*, not black-box: when the objective is itself a
   weighted sum of the reward terms (on Hungry-Thirsty fitness is the two ``not_hungry_*``
   terms up to a constant and the last step), the fit returns the objective as the reward
   whatever the data. Without ``credit`` the policy is a black-box hill climber that uses
   only the metric.
3. **Judge**: after ``settle`` evaluations, keep the change if the mean of the last ``judge``
   of them (all of them when ``judge`` is 0) beats the mean before it by ``min_delta``;
   otherwise revert it and remember the move as tried. A learner answers a reward change
   late (PPO on Hungry-Thirsty takes tens of thousands of steps), so a long ``settle`` with a
   short ``judge`` looks at where the trial ended, not at the lag. With ``accept_early`` a
   trial whose last ``judge`` evaluations already beat the baseline is kept at once.
4. When every move from the current point was tried, double the step (up to the whole range).
5. **Horizon**: when the evaluations say how long the run is (``total_timesteps``), no trial
   starts that could not be judged before the run ends (the run would end on an unjudged
   change).
6. At most ``max_actions`` changes in all.

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
import itertools
import math
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..flags import option
from ..state import VariableState
from ..values import Value, VarType


@dataclass
class PolicyConfig:
    """What the tuner watches, when it acts and how far it moves (each field is also a flag
    of ``livetune tune``)."""

    metric: str = option("mean_fitness", "key of the evaluation events")
    knobs: tuple[str, ...] = option(("reward.*",), "variables it may change (bounded numbers "
                                    "only)", parse=str, nargs="+", metavar="GLOB")
    patience: int = option(2, "evaluations without gain = stall")
    settle: int = option(2, "evaluations to judge a change")
    min_delta: float = option(1.0, "gain that counts")
    step: float = option(0.25, "move, as a fraction of the range")
    target: float | None = option(None, "stop acting at this metric")
    max_actions: int = option(50, "changes the tuner makes at most")
    seed: int = option(0, "seed of the tuner's move order")
    judge: int = option(0, "judge on the mean of the last N settle evaluations (0: all)")
    width: int = option(1, "variables moved together in one trial (0: all)")
    credit: str | None = option(
        None, "first move: the reward terms that co-vary with this per-episode key (e.g. "
        "fitness) of the events' train_episodes", metavar="KEY")
    credit_window: int = option(200, "training episodes the --credit correlations use")
    credit_min: float = option(0.1, "smallest |correlation| that moves a term's weight")
    credit_rule: Literal["fit", "correlate"] = option(
        "fit", "credit move: least-squares fit of the key on the terms (set the weights to "
        "it), or step each weight by the sign of its correlation", parse=str,
        choices=("fit", "correlate"))
    accept_early: bool = option(
        False, "keep a change as soon as its last --judge evaluations beat the baseline")

    def __post_init__(self) -> None:
        if self.patience < 1 or self.settle < 1:
            raise ValueError("patience and settle must be at least 1")
        if not 0 <= self.judge <= self.settle:
            raise ValueError(f"judge must be between 0 and settle ({self.settle})")
        if self.width < 0:
            raise ValueError("width must be 0 (all) or more")

    @property
    def judged(self) -> int:
        """How many of a trial's last evaluations its score is the mean of."""
        return self.judge or self.settle


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

    @property
    def span(self) -> float:
        return self.high - self.low

    def moved(self, value: float, direction: int, step: float) -> float:
        if self.log:
            new = value * 2.0 ** (direction * step * 4)
        else:
            new = value + direction * step * (self.high - self.low)
        new = min(self.high, max(self.low, new))
        return float(round(new)) if self.integer else float(new)


Move = tuple[tuple[str, int], ...]
"""A trial's move: (variable, direction +1/-1) pairs, sorted by name."""

_MAX_MOVES = 4096
"""Enumerate every move up to this many; beyond it, draw them at random."""


@dataclass
class _Trial:
    move: Move
    changed: tuple[str, ...]
    before: dict[str, float]
    baseline: float
    scores: list[float] = field(default_factory=list)


def _pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of two equal-length series (0 when either is constant)."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx <= 0 or syy <= 0:
        return 0.0
    return sxy / math.sqrt(sxx * syy)


def _changed(target: Mapping[str, float], values: Mapping[str, Value]) -> dict[str, float]:
    """The entries of ``target`` that differ from ``values``."""
    return {n: v for n, v in target.items()
            if not math.isclose(v, float(values[n]),  # type: ignore[arg-type]
                                rel_tol=1e-9, abs_tol=1e-12)}


def _least_squares(x: Sequence[Sequence[float]], y: Sequence[float]) -> list[float]:
    """Solve ``min |x w - y|`` by the normal equations (a tiny ridge keeps them solvable)."""
    k = len(x[0])
    a = [[sum(r[i] * r[j] for r in x) for j in range(k)] for i in range(k)]
    b = [sum(r[i] * t for r, t in zip(x, y, strict=True)) for i in range(k)]
    ridge = 1e-9 * max(1.0, sum(a[i][i] for i in range(k)) / k)
    for i in range(k):
        a[i][i] += ridge
    for col in range(k):  # Gaussian elimination with partial pivoting
        pivot = max(range(col, k), key=lambda r: abs(a[r][col]))
        a[col], a[pivot], b[col], b[pivot] = a[pivot], a[col], b[pivot], b[col]
        for r in range(col + 1, k):
            f = a[r][col] / a[col][col]
            for j in range(col, k):
                a[r][j] -= f * a[col][j]
            b[r] -= f * b[col]
    w = [0.0] * k
    for i in range(k - 1, -1, -1):
        w[i] = (b[i] - sum(a[i][j] * w[j] for j in range(i + 1, k))) / a[i][i]
    return w


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
    """Stall-triggered hill climbing with revert (see the module doc)."""

    def __init__(self, config: PolicyConfig, variables: Sequence[VariableState]) -> None:
        self.config = config
        self.tunables = {t.name: t for t in tunables(variables, config.knobs)}
        self.history: list[float] = []
        self.trial: _Trial | None = None
        self.tried: set[Move] = set()
        self.step = config.step
        self.actions = 0
        self.last_step: int | None = None
        self.episodes: deque[dict[str, float]] = deque(maxlen=config.credit_window)
        self._rng = random.Random(config.seed)

    def _stalled(self) -> bool:
        c, h = self.config, self.history
        if len(h) <= c.patience:
            return False
        if c.target is not None and h[-1] >= c.target:
            return False
        return max(h[-c.patience:]) < max(h[:-c.patience]) + c.min_delta

    def _moves(self) -> list[Move]:
        """The moves not yet tried from the current point, in a seeded random order."""
        names = sorted(self.tunables)
        width = min(self.config.width or len(names), len(names))
        count = math.comb(len(names), width) * 2 ** width
        if count <= _MAX_MOVES:
            moves = [tuple(zip(chosen, signs, strict=True))
                     for chosen in itertools.combinations(names, width)
                     for signs in itertools.product((1, -1), repeat=width)]
        else:
            drawn = {tuple(sorted((n, self._rng.choice((1, -1)))
                                  for n in self._rng.sample(names, width)))
                     for _ in range(_MAX_MOVES)}
            moves = sorted(drawn)
        moves = [m for m in moves if m not in self.tried]
        self._rng.shuffle(moves)
        return moves

    def _add_episodes(self, episodes: Mapping[str, Sequence[float]]) -> None:
        """Keep the training episodes of one event (one list per key, equal lengths)."""
        credit = self.config.credit
        if credit is None or credit not in episodes:
            return
        count = len(episodes[credit])
        columns = {k: v for k, v in episodes.items() if len(v) == count}
        for i in range(count):
            self.episodes.append({k: float(v[i]) for k, v in columns.items()})

    def correlations(self) -> dict[str, float]:
        """Pearson correlation of each tunable's per-episode term with the credit key."""
        credit = self.config.credit
        rows = [e for e in self.episodes if credit in e]
        found: dict[str, float] = {}
        if credit is None or len(rows) < 3:
            return found
        y = [e[credit] for e in rows]
        for name in sorted(self.tunables):
            if all(name in e for e in rows):
                found[name] = _pearson([e[name] for e in rows], y)
        return found

    def fitted_weights(self) -> dict[str, float]:
        """Least-squares weights ``w`` with ``credit ~ sum(w_i * term_i)`` per episode, over
        the tunables whose terms the kept episodes report (empty when too few episodes)."""
        credit = self.config.credit
        names = [n for n in sorted(self.tunables)
                 if self.episodes and all(n in e for e in self.episodes)]
        rows = [e for e in self.episodes if credit in e]
        if credit is None or not names or len(rows) <= len(names):
            return {}
        x = [[e[n] for n in names] for e in rows]
        y = [e[credit] for e in rows]
        return dict(zip(names, _least_squares(x, y), strict=True))

    def _credit_target(self, values: Mapping[str, Value]) -> tuple[dict[str, float], str]:
        """The values the credit move goes to, and why."""
        c = self.config
        if c.credit_rule == "correlate":
            corr = self.correlations()
            target = self._stepped(tuple((n, 1 if r > 0 else -1) for n, r in sorted(corr.items())
                                         if abs(r) >= c.credit_min), values)
            why = ", ".join(f"{n} r={corr[n]:+.2f}" for n in target)
            return target, f"correlation with {c.credit}: {why}"
        fitted = self.fitted_weights()
        largest = max((abs(w) for w in fitted.values()), default=0.0)
        if largest <= 1e-12:
            return {}, ""
        bound = min(max(abs(self.tunables[n].low), abs(self.tunables[n].high)) for n in fitted)
        target = {n: round(min(self.tunables[n].high, max(self.tunables[n].low,
                                                          w * bound / largest)), 2)
                  for n, w in fitted.items()}
        why = ", ".join(f"{n} {w:+.3g}" for n, w in fitted.items())
        return target, f"least-squares fit of {c.credit} on the reward terms: {why}"

    def _stepped(self, move: Move, values: Mapping[str, Value]) -> dict[str, float]:
        """Where ``move`` takes each of its variables from ``values`` (clipped to bounds)."""
        return {n: self.tunables[n].moved(float(values[n]), d, self.step)  # type: ignore[arg-type]
                for n, d in move}

    def _credit_move(self, values: Mapping[str, Value]
                     ) -> tuple[Move, dict[str, float], str] | None:
        target, why = self._credit_target(values)
        new = _changed(target, values)
        # a fit that lands within half a step of where we are is noise, not a move
        if not any(abs(v - float(values[n])) >= self.step / 2 * self.tunables[n].span  # type: ignore[arg-type]
                   for n, v in new.items()):
            return None
        move = tuple((n, 1 if v > float(values[n]) else -1)  # type: ignore[arg-type]
                     for n, v in sorted(new.items()))
        if move in self.tried:
            return None
        return move, new, f" ({why})"

    def _next_move(self, values: Mapping[str, Value]) -> tuple[Move, dict[str, float]] | None:
        for _ in range(2):
            for move in self._moves():
                new = _changed(self._stepped(move, values), values)
                if new:
                    return move, new
                self.tried.add(move)
            if self.step >= 1.0:
                return None
            self.step = min(1.0, self.step * 2)  # every move from here tried: look further
            self.tried.clear()
        return None

    def forget(self) -> None:
        """Drop the current trial (someone else changed a variable under us)."""
        self.trial = None
        self.history.clear()

    def _out_of_time(self, step: int | None, total: int | None) -> bool:
        """True when a trial started now could not be judged before the run's last step."""
        if step is None or total is None or self.last_step is None:
            return False
        interval = step - self.last_step
        return interval > 0 and step + self.config.settle * interval > total

    def observe(self, metric: float, values: Mapping[str, Value], *, step: int | None = None,
                total: int | None = None,
                episodes: Mapping[str, Sequence[float]] | None = None) -> Action | None:
        """Record one evaluation; return the change to make now, if any.

        ``step`` (the run's step at this evaluation) and ``total`` (its step budget), when
        known, keep the policy from starting a trial the run would end in the middle of.
        ``episodes``: the event's ``train_episodes`` (used with ``credit``).
        """
        c = self.config
        if episodes:
            self._add_episodes(episodes)
        out_of_time = self._out_of_time(step, total)
        if step is not None:
            self.last_step = step
        if self.trial is not None:
            self.trial.scores.append(metric)
            judged = self.trial.scores[-c.judged:]
            score = sum(judged) / len(judged)
            early = (c.accept_early and len(judged) == c.judged
                     and score >= self.trial.baseline + c.min_delta)
            if len(self.trial.scores) < c.settle and not early:
                return None
            trial, self.trial = self.trial, None
            if score >= trial.baseline + c.min_delta:
                self.tried.clear()  # a new point: every move is worth trying again
                self.history = list(judged)
                return None
            self.tried.add(trial.move)
            self.history.append(metric)
            self.actions += 1
            names = list(trial.changed)
            return Action("revert", {n: trial.before[n] for n in names},
                          f"{', '.join(names)} move gave {score:.3g}, not better than "
                          f"{trial.baseline:.3g} + {c.min_delta}: reverted")
        self.history.append(metric)
        if (not self.tunables or self.actions >= c.max_actions or out_of_time
                or not self._stalled()):
            return None
        credited = self._credit_move(values)
        if credited is not None:
            move, new, why = credited
        else:
            chosen = self._next_move(values)
            if chosen is None:
                return None
            (move, new), why = chosen, ""
        before = {n: float(values[n]) for n in self.tunables}  # type: ignore[arg-type]
        window = self.history[-c.judged:]
        self.trial = _Trial(move, tuple(new), before, sum(window) / len(window))
        self.actions += 1
        moves = ", ".join(f"{n} {before[n]:.4g} -> {v:.4g}" for n, v in new.items())
        return Action("set", new,
                      f"{c.metric} stalled at {metric:.3g} for {c.patience} evaluations: "
                      f"trying {moves}{why}")
