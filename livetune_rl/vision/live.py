"""The live knobs and triggers of a vision training loop, applied from one snapshot.

Knobs (deferred: ``livetune ls`` shows them pending until the loop applies them):

=================  ==========================================================================
``learning_rate``  base rate of every param group, written in place (see :mod:`.schedule`
                   for how it composes with the LR schedule)
``momentum``       SGD ``momentum`` (Adam/AdamW: ``betas[0]``), in place
``weight_decay``   ``weight_decay`` of every param group, in place
``batch_size``     per-rank batch size of the :class:`~.sampler.LiveBatchSampler`
``dropout``        ``p`` of every ``nn.Dropout`` of the model
=================  ==========================================================================

``lr_drop_factor`` is a plain live variable read when ``lr_drop`` fires. Triggers:
``checkpoint``, ``evaluate``, ``stop``, ``lr_drop`` (multiply the base rate by
``lr_drop_factor``). Optimizer state (momentum buffers) is never rebuilt.

Each knob and each trigger is one row of :data:`KNOB_ROWS` / :data:`TRIGGER_ROWS` (a new knob
is a new row); the knobs are applied by :class:`~livetune_rl.knobs.Knobs`, the package's one
safe-point mechanism (a follower's on the ranks other than 0).

The loop applies a :class:`ControlSnapshot` rather than reading the variables one by one, so
that in DDP every rank applies exactly what rank 0 read (see :mod:`.distributed`). Rank 0 owns
the registry and journals each applied change with the global iteration as ``step`` and
``{"epoch": e, "iteration": i, "apply_s": seconds}`` (iteration within the epoch; the time the
training thread spent putting the value into effect) as data; other ranks hold no
registry and apply the same snapshot at the same iteration.

Example::

    >>> import torch
    >>> from livetune_rl import Registry
    >>> from livetune_rl.vision.sampler import LiveBatchSampler
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> reg = Registry()
    >>> control = LiveControl(reg, KnobTargets(opt, model, LiveBatchSampler(8, 4)),
    ...                       initial={"learning_rate": 0.1, "momentum": 0.9})
    >>> _ = reg.set({"learning_rate": 0.01, "dropout": 0.1})
    >>> actions = control.apply(control.snapshot(), epoch=0, iteration=3, step=3)
    >>> opt.param_groups[0]["lr"], model[1].p, sorted(actions.applied)
    (0.01, 0.1, ['dropout', 'learning_rate'])
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from torch import nn

from ..knobs import Knobs, Reading
from ..registry import LiveTrigger, LiveVariable, Registry
from ..values import Check, Value
from .models import dropout_layers, set_dropout
from .sampler import LiveBatchSampler
from .schedule import set_base_lr

LR_MIN, LR_MAX = 0.0, 10.0
LR_DROP_FACTOR = "lr_drop_factor"


@dataclass
class KnobTargets:
    """What the knobs act on (the same objects the training loop uses)."""

    optimizer: Any
    model: nn.Module
    sampler: LiveBatchSampler
    scheduler: Any = None
    nesterov: bool = False


# ----------------------------------------------------------------- the knobs, one row each
@dataclass(frozen=True)
class KnobRow:
    """One vision knob: how it is read from the targets, checked and put into effect."""

    name: str
    help: str
    kind: type[float] | type[int]
    min: float | int
    max: float | int
    current: Callable[[KnobTargets], float]
    """its value in the targets now (the default when no initial value is given)"""
    apply: Callable[[KnobTargets, float], Value]
    """puts a value into effect; returns the value in effect"""
    check: Callable[[KnobTargets], Check | None] = lambda targets: None
    """an extra rule that depends on the targets"""


def _group0(targets: KnobTargets) -> Any:
    return targets.optimizer.param_groups[0]


def _current_momentum(targets: KnobTargets) -> float:
    group = _group0(targets)
    return float(group["betas"][0] if "betas" in group else group.get("momentum", 0.0))


def _apply_lr(targets: KnobTargets, value: float) -> Value:
    return set_base_lr(targets.optimizer, targets.scheduler, value)


def _apply_momentum(targets: KnobTargets, value: float) -> Value:
    for group in targets.optimizer.param_groups:
        if "betas" in group:
            group["betas"] = (value, group["betas"][1])
        else:
            group["momentum"] = value
    return value


def _apply_weight_decay(targets: KnobTargets, value: float) -> Value:
    for group in targets.optimizer.param_groups:
        group["weight_decay"] = value
    return value


def _apply_batch_size(targets: KnobTargets, value: float) -> Value:
    targets.sampler.batch_size = int(value)
    return int(value)


def _apply_dropout(targets: KnobTargets, value: float) -> Value:
    set_dropout(targets.model, value)
    return value


def _momentum_check(targets: KnobTargets) -> Check:
    def check(value: Value) -> str | None:
        if targets.nesterov and float(value) <= 0:
            return "Nesterov momentum needs momentum > 0 (the optimizer would refuse it)"
        return None
    return check


def _batch_check(targets: KnobTargets) -> Check:
    shard = targets.sampler.shard_size

    def check(value: Value) -> str | None:
        if int(value) > shard:
            return f"larger than this rank's share of the training set ({shard} samples)"
        return None
    return check


def _dropout_check(targets: KnobTargets) -> Check:
    def check(value: Value) -> str | None:
        if float(value) == 0 or dropout_layers(targets.model):
            return None
        return "the model has no dropout layers"
    return check


KNOB_ROWS: tuple[KnobRow, ...] = (
    KnobRow("learning_rate", "base learning rate (x the LR schedule's factor)", float,
            LR_MIN, LR_MAX, lambda t: float(_group0(t).get("initial_lr", _group0(t)["lr"])),
            _apply_lr),
    KnobRow("momentum", "SGD momentum (Adam: beta1); buffers kept", float, 0.0, 0.999,
            _current_momentum, _apply_momentum, _momentum_check),
    KnobRow("weight_decay", "L2 weight decay of every param group", float, 0.0, 1.0,
            lambda t: float(_group0(t).get("weight_decay", 0.0)), _apply_weight_decay),
    KnobRow("batch_size", "per-rank batch size, from the next batch cut", int, 1, 1 << 20,
            lambda t: t.sampler.batch_size, _apply_batch_size, _batch_check),
    KnobRow("dropout", "p of every dropout layer", float, 0.0, 1.0,
            lambda t: float(dropout_layers(t.model)[0].p) if dropout_layers(t.model) else 0.0,
            _apply_dropout, _dropout_check),
)
KNOBS = tuple(row.name for row in KNOB_ROWS)


# ----------------------------------------------------------------- the triggers, one row each
@dataclass(frozen=True)
class TriggerRow:
    """One vision trigger; the loop reads how many fires to act on from :class:`Actions`."""

    name: str
    help: str
    max_pending: int | None = 1
    """fires that may wait at once (None: every fire counts, e.g. two drops multiply twice)"""


TRIGGER_ROWS: tuple[TriggerRow, ...] = (
    TriggerRow("checkpoint", "save a checkpoint at the next iteration"),
    TriggerRow("evaluate", "evaluate on the validation set at the next iteration"),
    TriggerRow("stop", "checkpoint and end training at the next iteration"),
    TriggerRow("lr_drop", "multiply learning_rate by lr_drop_factor", max_pending=None),
)
TRIGGERS = tuple(row.name for row in TRIGGER_ROWS)


@dataclass(frozen=True)
class ControlSnapshot:
    """Values, versions and trigger counts read at one instant (the unit broadcast in DDP)."""

    key: int
    values: dict[str, Value]
    versions: dict[str, int]
    fires: dict[str, int]


@dataclass
class Actions:
    """What :meth:`LiveControl.apply` did and what the loop must do now."""

    applied: dict[str, Value] = field(default_factory=dict)
    fires: dict[str, int] = field(default_factory=dict)
    """fires of each trigger to act on now, by name"""
    seconds: float = 0.0

    @property
    def checkpoint(self) -> int:
        return self.fires.get("checkpoint", 0)

    @property
    def evaluate(self) -> int:
        return self.fires.get("evaluate", 0)

    @property
    def stop(self) -> bool:
        return self.fires.get("stop", 0) > 0

    @property
    def lr_drops(self) -> int:
        return self.fires.get("lr_drop", 0)

    def __bool__(self) -> bool:
        return bool(self.applied or any(self.fires.values()))


class LiveControl:
    """Registers the vision knobs and triggers, and applies snapshots of them to the targets.

    Args:
        registry: rank 0's registry (variables and triggers are registered in it), or None on
            the other ranks of a DDP job, which only apply what rank 0 broadcasts.
        targets: the optimizer, model, batch sampler and scheduler to act on.
        initial: initial values (default: what the targets hold now); ``lr_drop_factor``
            defaults to 0.1.
    """

    def __init__(self, registry: Registry | None, targets: KnobTargets,
                 initial: dict[str, Value] | None = None) -> None:
        self.registry = registry
        self.targets = targets
        current: dict[str, Value] = {row.name: row.kind(row.current(targets))
                                     for row in KNOB_ROWS}
        current[LR_DROP_FACTOR] = 0.1
        current.update(initial or {})
        self.values: dict[str, Value] = dict(current)
        self.knobs = Knobs(registry, timed=True) if registry is not None else \
            Knobs.follower(timed=True)
        self.vars: dict[str, LiveVariable] = {}
        self.triggers: dict[str, LiveTrigger] = {}
        self._factor_version = 0
        self._handled: dict[str, int] = dict.fromkeys(TRIGGERS, 0)
        self._seen_registry = -1
        self._key = 0
        for row in KNOB_ROWS:
            value = row.kind(current[row.name])
            put = partial(self._put, row)
            if registry is None:
                self.knobs.follow(row.name, put)
            else:
                self.vars[row.name] = self.knobs.add(
                    row.name, value, put, min=row.min, max=row.max, help=row.help,
                    check=row.check(targets))
            put(value)  # put the initial value into effect
        if registry is not None:
            self.vars[LR_DROP_FACTOR] = LiveVariable(
                LR_DROP_FACTOR, float(current[LR_DROP_FACTOR]), min=1e-6, max=1.0,
                help="what `fire lr_drop` multiplies the learning rate by", registry=registry)
            for trow in TRIGGER_ROWS:  # a fire of one with max_pending=1 joins one waiting
                self.triggers[trow.name] = LiveTrigger(
                    trow.name, trow.help, max_pending=trow.max_pending, registry=registry)

    def _put(self, row: KnobRow, value: Value) -> Value:
        """Put ``value`` of ``row`` into effect; returns the value in effect."""
        in_effect = row.apply(self.targets, float(value))
        self.values[row.name] = value
        return in_effect

    def close(self) -> None:
        """Unregister every variable and trigger (a new loop can then register them)."""
        if self.registry is None:
            return
        self.knobs.close()
        for name in [*self.vars, *self.triggers]:
            if name in self.registry:
                self.registry.remove(name)

    # ----------------------------------------------------------------- reading
    def key(self) -> int:
        """Highest version of any knob or trigger: changes exactly when one is set or fired.

        One int comparison when the registry did not change since the last call.
        """
        reg = self.registry
        if reg is None:
            return self._key
        if reg.version != self._seen_registry:
            self._seen_registry = reg.version
            self._key = max([v.version for v in self.vars.values()]
                            + [t.version for t in self.triggers.values()])
        return self._key

    def snapshot(self) -> ControlSnapshot:
        """Read every knob (version before value, so a racing set is applied next time)."""
        key = self.key()
        reading = self.knobs.read(everything=True)
        factor = self.vars[LR_DROP_FACTOR]
        factor_version = factor.version
        fires = {n: t.fires for n, t in self.triggers.items()}
        return ControlSnapshot(key, {**reading.values, LR_DROP_FACTOR: factor.value},
                               {**reading.versions, LR_DROP_FACTOR: factor_version}, fires)

    # ----------------------------------------------------------------- applying
    def apply(self, snap: ControlSnapshot, *, epoch: int, iteration: int,
              step: int) -> Actions:
        """Apply every knob whose version is newer than the last applied one, consume fires.

        ``step`` is the global iteration (optimizer steps done), ``iteration`` the iteration
        within ``epoch``. Changes take effect for the next optimizer step. ``lr_drop`` fires
        are applied after the values of the same snapshot.
        """
        started = time.perf_counter()
        actions = Actions()
        where = {"epoch": epoch, "iteration": iteration}
        reading = Reading({n: v for n, v in snap.versions.items() if n in KNOBS}, snap.values)
        for done in self.knobs.apply(reading, step=step, data=where):
            actions.applied[done.name] = done.value
        version = snap.versions.get(LR_DROP_FACTOR, 0)
        if version > self._factor_version:
            self._factor_version = version
            self.values[LR_DROP_FACTOR] = actions.applied[LR_DROP_FACTOR] = \
                snap.values[LR_DROP_FACTOR]
        for name in TRIGGERS:
            count = snap.fires.get(name, 0) - self._handled[name]
            if count <= 0:
                continue
            self._handled[name] += count
            if self.registry is not None:
                for _ in range(count):
                    self.triggers[name].fired(step=step, data=where)
            actions.fires[name] = count
        for _ in range(actions.lr_drops):
            self._drop_lr(step, where, actions)
        actions.seconds = time.perf_counter() - started
        return actions

    def _drop_lr(self, step: int, where: dict[str, int], actions: Actions) -> None:
        new = min(LR_MAX, max(LR_MIN, float(self.values["learning_rate"])
                              * float(self.values[LR_DROP_FACTOR])))
        if self.registry is None:  # a follower: rank 0 journals it
            actions.applied["learning_rate"] = self._put(KNOB_ROWS[0], new)
            return
        event = self.registry.set({"learning_rate": new}, source="lr_drop")[0]
        if event.unchanged:  # already at the floor: nothing to apply
            return
        for done in self.knobs.apply(Reading({"learning_rate": event.v},
                                             {"learning_rate": new}),
                                     step=step, data={**where, "lr_drop": True}):
            actions.applied[done.name] = done.value

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Values in effect (restored on resume) and trigger counts handled."""
        return {"values": dict(self.values), "handled": dict(self._handled)}

    def restore(self, state: dict[str, Any], *, source: str = "resume") -> None:
        """Put a checkpoint's live values back into effect (and into the registry on rank 0)."""
        values = {k: v for k, v in state.get("values", {}).items() if k in self.values}
        if self.registry is not None:
            changed = {k: v for k, v in values.items() if self.vars[k].value != v}
            if changed:
                events = self.registry.set(changed, source=source)
                knobs = {e.name: e.v for e in events if e.name in KNOBS}
                self.knobs.apply(Reading(knobs, {n: changed[n] for n in knobs}),
                                 data={"resume": True})
                if LR_DROP_FACTOR in changed:
                    self._factor_version = self.vars[LR_DROP_FACTOR].version
        rows = {row.name: row for row in KNOB_ROWS}
        for name, value in values.items():
            if name in rows:
                self._put(rows[name], value)
            else:
                self.values[name] = value
