"""``livetune export RUN_DIR``: the schedule a hand-tuned run followed, usable without livetune.

Every knob a run's journal changed becomes a piecewise-constant schedule keyed by step: its
value at the run's start, then each value from the step the run *applied* it at (the same
steps :mod:`livetune_rl.replay` replays). ``--format`` writes it as

* ``json``/``yaml``: ``{"schedules": {"learning_rate": {"start": 0.001, "changes":
  {"512": 0.0005}}}, ...}``, for a hyperparameter file;
* ``python``: a self-contained module (it imports only SB3) with the table, ``schedule(name)``
  (an SB3 schedule callable, e.g. ``PPO(..., learning_rate=schedule("learning_rate"))``) and
  ``ScheduleCallback`` (applies each change at the same safe point as livetune did: a step knob
  or a reward weight at that step, any other knob at the rollout end, before ``train()``).

Before its first change a knob is whatever the run was configured with (for a schedule such
as DQN's exploration, that schedule): ``start`` is only the value it had when the run began.
Fires (``evaluate``, ``checkpoint``) are listed with their steps; they change no knob.

Example::

    >>> from livetune_rl.replay import Change, ReplayPlan
    >>> plan = ReplayPlan((Change(512, "learning_rate", "set", 5e-4, 7),
    ...                    Change(900, "evaluate", "fire", None, 9)),
    ...                   start_values={"learning_rate": 1e-3, "gamma": 0.99})
    >>> export = Export.from_plan(plan, run="ppo-a", algo="ppo", env="CartPole-v1",
    ...                           total_timesteps=2048)
    >>> export.schedules[0].value_at(511), export.schedules[0].value_at(512)
    (0.001, 0.0005)
    >>> print(export.to_yaml().split("schedules:")[1])
    <BLANKLINE>
      learning_rate:
        cadence: rollout
        start: 0.001
        changes:
          512: 0.0005
    fires:
      evaluate: [900]
    <BLANKLINE>
"""

from __future__ import annotations

import argparse
import json
import pprint
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .replay import ReplayPlan
from .values import LiveTuneError, Value

if TYPE_CHECKING:
    from .replay_cli import OriginalRun

STEP_KNOBS = ("exploration_rate",)
"""Knobs livetune applies at the next env step (``every_step`` in
:mod:`livetune_rl.sb3.algorithm_knobs`); reward weights are applied at the next step too."""

REWARD_PREFIX = "reward."
FORMATS = ("yaml", "json", "python")

Cadence = Literal["step", "rollout"]


def cadence_of(name: str) -> Cadence:
    """Where livetune applies ``name``: ``step`` (the next env step) or ``rollout`` (its end).

    Example::

        >>> cadence_of("reward.scale"), cadence_of("learning_rate")
        ('step', 'rollout')
    """
    return "step" if name in STEP_KNOBS or name.startswith(REWARD_PREFIX) else "rollout"


@dataclass(frozen=True)
class Schedule:
    """One knob's piecewise-constant schedule.

    :param name: the knob (``learning_rate``, ``reward.hungry_thirsty``).
    :param start: its value when the run began (None: not journaled).
    :param changes: ``(step, value)``, by step: the value in effect from that step on.
    :param cadence: where the value was put into effect (see :func:`cadence_of`).
    """

    name: str
    start: Value | None
    changes: tuple[tuple[int, Value], ...]
    cadence: Cadence

    def value_at(self, step: int) -> Value | None:
        """The value in effect at ``step`` (``start`` before the first change)."""
        value = self.start
        for at, new in self.changes:
            if at > step:
                break
            value = new
        return value


@dataclass(frozen=True)
class Export:
    """A run's schedules and fires, ready to write (:meth:`to_json`, :meth:`to_yaml`,
    :meth:`to_python`)."""

    run: str
    algo: str
    env: str
    total_timesteps: int
    schedules: tuple[Schedule, ...]
    fires: Mapping[str, tuple[int, ...]]

    @classmethod
    def from_plan(cls, plan: ReplayPlan, *, run: str, algo: str, env: str,
                  total_timesteps: int) -> Export:
        """The schedules of ``plan``: one per variable it sets (the last set applied at a
        step wins), plus every reward weight, so that a push of the weights has them all."""
        points: dict[str, dict[int, Value]] = {}
        fires: dict[str, list[int]] = {}
        for change in plan.history():  # resumes included
            if change.kind == "fire":
                fires.setdefault(change.name, []).append(change.step)
            else:
                assert change.value is not None  # a set always has its value
                points.setdefault(change.name, {})[change.step] = change.value
        for name in plan.start_values:
            if name.startswith(REWARD_PREFIX):
                points.setdefault(name, {})
        schedules = tuple(Schedule(name, plan.start_values.get(name),
                                   tuple(sorted(points[name].items())), cadence_of(name))
                          for name in sorted(points))
        return cls(run, algo, env, total_timesteps, schedules,
                   {name: tuple(steps) for name, steps in sorted(fires.items())})

    @classmethod
    def from_run(cls, original: OriginalRun) -> Export:
        """The export of a ``livetune train`` run read with :meth:`OriginalRun.read
        <livetune_rl.replay_cli.OriginalRun.read>`."""
        config = original.config
        return cls.from_plan(original.plan, run=original.path.name, algo=config.algo,
                             env=config.env, total_timesteps=config.timesteps)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (steps as text keys, as JSON objects need)."""
        return {"run": self.run, "algo": self.algo, "env": self.env,
                "total_timesteps": self.total_timesteps,
                "schedules": {s.name: {"cadence": s.cadence, "start": s.start,
                                       "changes": {str(k): v for k, v in s.changes}}
                              for s in self.schedules},
                "fires": {name: list(steps) for name, steps in self.fires.items()}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_yaml(self) -> str:
        """YAML (block style; every scalar written as JSON, which YAML reads the same)."""
        out = [f"# piecewise-constant schedules of the livetune run {self.run}: each value",
               "# holds from its step (num_timesteps) on; before a knob's first change the run",
               "# used its own setting (start: the value it had when the run began)",
               f"run: {json.dumps(self.run)}", f"algo: {json.dumps(self.algo)}",
               f"env: {json.dumps(self.env)}", f"total_timesteps: {self.total_timesteps}",
               "schedules:" + ("" if self.schedules else " {}")]
        for s in self.schedules:
            out += [f"  {s.name}:", f"    cadence: {s.cadence}",
                    f"    start: {json.dumps(s.start)}",
                    "    changes:" + ("" if s.changes else " {}")]
            out += [f"      {step}: {json.dumps(value)}" for step, value in s.changes]
        out.append("fires:" + ("" if self.fires else " {}"))
        out += [f"  {name}: {json.dumps(list(steps))}" for name, steps in self.fires.items()]
        return "\n".join(out) + "\n"

    def to_python(self) -> str:
        """A module that needs only SB3: the table, ``schedule(name)`` and
        ``ScheduleCallback``."""
        table = {s.name: {"start": s.start, "cadence": s.cadence, "changes": list(s.changes)}
                 for s in self.schedules}
        return _PYTHON.format(
            run=self.run, algo=self.algo, env=self.env, total=self.total_timesteps,
            table=pprint.pformat(table, sort_dicts=False),
            fires=repr({name: list(steps) for name, steps in self.fires.items()}))

    def render(self, fmt: str) -> str:
        """The export in ``fmt`` (one of :data:`FORMATS`)."""
        if fmt not in FORMATS:
            raise LiveTuneError(f"unknown export format {fmt!r}: use one of "
                                f"{', '.join(FORMATS)}")
        return {"yaml": self.to_yaml, "json": self.to_json, "python": self.to_python}[fmt]()


_PYTHON = '''"""Schedules of the livetune run {run} ({algo} on {env}), by `livetune export`.

Each knob holds its value from the step (num_timesteps) of each change on; before its first
change the run used its own setting. Needs stable-baselines3 only, not livetune:

    model = PPO("MlpPolicy", env, learning_rate=schedule("learning_rate"))  # an SB3 callable
    model.learn(TOTAL_TIMESTEPS, callback=ScheduleCallback(skip=["learning_rate"]))
"""

from stable_baselines3.common.callbacks import BaseCallback

TOTAL_TIMESTEPS = {total}
SCHEDULES = {table}
FIRES = {fires}  # what was fired, at which steps (not replayed by ScheduleCallback)


def value_at(name, step):
    """The value of ``name`` in effect at ``step`` (its start value before its first change)."""
    value = SCHEDULES[name]["start"]
    for at, new in SCHEDULES[name]["changes"]:
        if at > step:
            break
        value = new
    return value


def schedule(name, total_timesteps=TOTAL_TIMESTEPS, before=None):
    """An SB3 schedule (progress_remaining -> value) of ``name`` for a run of
    ``total_timesteps``; ``before``: the schedule to follow before the first change."""
    first = SCHEDULES[name]["changes"][0][0] if SCHEDULES[name]["changes"] else None

    def value(progress_remaining):
        step = round((1.0 - progress_remaining) * total_timesteps)
        if before is not None and (first is None or step < first):
            return before(progress_remaining)
        return value_at(name, step)

    return value


class ScheduleCallback(BaseCallback):
    """Applies every change of SCHEDULES at the step and safe point livetune applied it:
    a reward weight or a step knob at the env step, any other knob at the rollout end.

    :param skip: knobs not to apply (those given to the model as ``schedule(name)``).
    """

    def __init__(self, skip=(), verbose=0):
        super().__init__(verbose)
        self.todo = sorted((at, name, new) for name, s in SCHEDULES.items()
                           if name not in skip for at, new in s["changes"])
        self.weights = {{name[len("reward."):]: s["start"] for name, s in SCHEDULES.items()
                        if name.startswith("reward.") and name != "reward.scale"}}
        self.scale = SCHEDULES.get("reward.scale", {{}}).get("start", 1.0)

    def _due(self, cadence):
        due = [t for t in self.todo if t[0] <= self.num_timesteps
               and SCHEDULES[t[1]]["cadence"] == cadence]
        self.todo = [t for t in self.todo if t not in due]
        return [(name, new) for _, name, new in due]

    def _on_step(self):
        pushed = False
        for name, new in self._due("step"):
            if name == "reward.scale":
                self.scale, pushed = new, True
            elif name.startswith("reward."):
                self.weights[name[len("reward."):]], pushed = new, True
            else:
                _apply(self.model, name, new)
        if pushed:
            self.training_env.env_method("set_reward_weights", dict(self.weights), self.scale)
            buffer = getattr(self.model, "replay_buffer", None)
            if hasattr(buffer, "set_reward_weights"):  # a buffer that re-labels rewards
                buffer.set_reward_weights(dict(self.weights), self.scale)
        return True

    def _on_rollout_end(self):
        for name, new in self._due("rollout"):
            _apply(self.model, name, new)


def _constant(value):
    return lambda _progress_remaining: value


def _apply(model, name, value):
    """Put ``value`` into effect where SB3 does not undo it (as livetune does)."""
    if name == "learning_rate":
        model.lr_schedule, model.learning_rate = _constant(value), value
        for owner, attr in ((model.policy, "optimizer"), (getattr(model, "actor", None),
                            "optimizer"), (getattr(model, "critic", None), "optimizer"),
                            (model, "ent_coef_optimizer")):
            optimizer = getattr(owner, attr, None)
            for group in getattr(optimizer, "param_groups", []):
                group["lr"] = value
    elif name == "clip_range":
        model.clip_range = _constant(value)
    elif name == "exploration_rate":
        model.exploration_schedule, model.exploration_rate = _constant(value), value
    elif name in ("gamma", "gae_lambda"):
        setattr(model, name, value)
        if hasattr(model, "rollout_buffer"):
            setattr(model.rollout_buffer, name, value)
    elif name == "target_kl":
        model.target_kl = float(value) or None
    elif name == "ent_coef" and hasattr(model, "ent_coef_tensor"):
        import torch
        model.ent_coef = value
        model.ent_coef_tensor = torch.tensor(float(value), device=model.device)
    else:
        setattr(model, name, value)
'''


def add_parser(sub: Any) -> None:
    """Add ``export`` to the ``livetune`` subcommands."""
    p = sub.add_parser("export", help="write a run's changes as piecewise-constant schedules "
                                      "by step (YAML, JSON or a Python module for SB3)",
                       description="write a livetune train run's changes as "
                                   "piecewise-constant schedules keyed by step")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run to export (runs/<name>)")
    p.add_argument("--format", default="yaml", choices=FORMATS,
                   help="yaml or json: a hyperparameter file; python: a module with SB3 "
                        "schedule callables and a callback")
    p.add_argument("--output", "-o", default=None, metavar="FILE",
                   help="write to FILE (default: print)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    import sys

    from .replay_cli import OriginalRun

    try:
        original = OriginalRun.read(args.run_dir)
    except LiveTuneError as exc:
        raise SystemExit(f"livetune: error: {exc}") from None
    if original.vision:
        raise SystemExit(
            f"livetune: error: {original.path} is a train-vision run; export writes the "
            "schedules of livetune train runs for SB3. livetune history --file "
            f"{original.path}/journal.jsonl lists its changes, each applied record with "
            "its epoch and iteration")
    for warning in (*original.warnings, *original.plan.warnings):
        print(f"livetune: export: warning: {warning}", file=sys.stderr)
    text = Export.from_run(original).render(args.format)
    if args.output is None:
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0
