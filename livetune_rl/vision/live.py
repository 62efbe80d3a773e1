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
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..registry import LiveTrigger, LiveVariable, Registry
from ..values import Value
from .models import dropout_layers, set_dropout
from .sampler import LiveBatchSampler
from .schedule import set_base_lr

KNOBS = ("learning_rate", "momentum", "weight_decay", "batch_size", "dropout")
TRIGGERS = ("checkpoint", "evaluate", "stop", "lr_drop")
LR_MIN, LR_MAX = 0.0, 10.0


@dataclass
class KnobTargets:
    """What the knobs act on (the same objects the training loop uses)."""

    optimizer: Any
    model: nn.Module
    sampler: LiveBatchSampler
    scheduler: Any = None
    nesterov: bool = False


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
    checkpoint: int = 0
    evaluate: int = 0
    stop: bool = False
    lr_drops: int = 0
    seconds: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.applied or self.checkpoint or self.evaluate or self.stop
                    or self.lr_drops)


def _optimizer_values(optimizer: Any) -> dict[str, float]:
    group = optimizer.param_groups[0]
    momentum = group["betas"][0] if "betas" in group else group.get("momentum", 0.0)
    return {"momentum": float(momentum), "weight_decay": float(group.get("weight_decay", 0.0))}


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
        current: dict[str, Value] = {
            "learning_rate": float(targets.optimizer.param_groups[0].get(
                "initial_lr", targets.optimizer.param_groups[0]["lr"])),
            **_optimizer_values(targets.optimizer),
            "batch_size": int(targets.sampler.batch_size),
            "dropout": float(dropout_layers(targets.model)[0].p)
            if dropout_layers(targets.model) else 0.0,
            "lr_drop_factor": 0.1,
        }
        current.update(initial or {})
        self.values: dict[str, Value] = dict(current)
        self._applied: dict[str, int] = dict.fromkeys(self.values, 0)
        self._handled: dict[str, int] = dict.fromkeys(TRIGGERS, 0)
        self.vars: dict[str, LiveVariable] = {}
        self.triggers: dict[str, LiveTrigger] = {}
        self._seen_registry = -1
        self._key = 0
        if registry is not None:
            self._register(registry, current)
        for name in KNOBS:  # put the initial values into effect
            self._apply_knob(name, current[name])

    # ----------------------------------------------------------------- registration
    def _register(self, reg: Registry, v: dict[str, Value]) -> None:
        t = self.targets
        shard = t.sampler.shard_size

        def momentum_ok(value: Value) -> str | None:
            if t.nesterov and float(value) <= 0:  # type: ignore[arg-type]
                return "Nesterov momentum needs momentum > 0 (the optimizer would refuse it)"
            return None

        def batch_ok(value: Value) -> str | None:
            if int(value) > shard:  # type: ignore[call-overload]
                return f"larger than this rank's share of the training set ({shard} samples)"
            return None

        def dropout_ok(value: Value) -> str | None:
            if float(value) == 0 or dropout_layers(t.model):  # type: ignore[arg-type]
                return None
            return "the model has no dropout layers"

        add = self.vars.__setitem__
        add("learning_rate", LiveVariable(
            "learning_rate", float(v["learning_rate"]), min=LR_MIN, max=LR_MAX, deferred=True,
            help="base learning rate (x the LR schedule's factor)", registry=reg))
        add("momentum", LiveVariable(
            "momentum", float(v["momentum"]), min=0.0, max=0.999, deferred=True,
            check=momentum_ok, help="SGD momentum (Adam: beta1); buffers kept", registry=reg))
        add("weight_decay", LiveVariable(
            "weight_decay", float(v["weight_decay"]), min=0.0, max=1.0, deferred=True,
            help="L2 weight decay of every param group", registry=reg))
        add("batch_size", LiveVariable(
            "batch_size", int(v["batch_size"]), min=1, max=1 << 20, deferred=True,
            check=batch_ok, help="per-rank batch size, from the next batch cut", registry=reg))
        add("dropout", LiveVariable(
            "dropout", float(v["dropout"]), min=0.0, max=1.0, deferred=True, check=dropout_ok,
            help="p of every dropout layer", registry=reg))
        add("lr_drop_factor", LiveVariable(
            "lr_drop_factor", float(v["lr_drop_factor"]), min=1e-6, max=1.0,
            help="what `fire lr_drop` multiplies the learning rate by", registry=reg))
        helps = {"checkpoint": "save a checkpoint at the next iteration",
                 "evaluate": "evaluate on the validation set at the next iteration",
                 "stop": "checkpoint and end training at the next iteration",
                 "lr_drop": "multiply learning_rate by lr_drop_factor"}
        for name in TRIGGERS:  # each lr_drop counts (two drops: two multiplications);
            # a fire of the others joins one still waiting (their action runs once)
            self.triggers[name] = LiveTrigger(
                name, helps[name], max_pending=None if name == "lr_drop" else 1, registry=reg)

    def close(self) -> None:
        """Unregister every variable and trigger (a new loop can then register them)."""
        if self.registry is None:
            return
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
        versions = {n: v.version for n, v in self.vars.items()}
        fires = {n: t.fires for n, t in self.triggers.items()}
        values = {n: v.value for n, v in self.vars.items()}
        return ControlSnapshot(key, values, versions, fires)

    # ----------------------------------------------------------------- applying
    def _apply_knob(self, name: str, value: Value) -> Value:
        t = self.targets
        if name == "learning_rate":
            in_effect: Value = set_base_lr(t.optimizer, t.scheduler, float(value))  # type: ignore[arg-type]
        elif name == "momentum":
            for group in t.optimizer.param_groups:
                if "betas" in group:
                    group["betas"] = (float(value), group["betas"][1])  # type: ignore[arg-type]
                else:
                    group["momentum"] = float(value)  # type: ignore[arg-type]
            in_effect = float(value)  # type: ignore[arg-type]
        elif name == "weight_decay":
            for group in t.optimizer.param_groups:
                group["weight_decay"] = float(value)  # type: ignore[arg-type]
            in_effect = float(value)  # type: ignore[arg-type]
        elif name == "batch_size":
            t.sampler.batch_size = int(value)  # type: ignore[call-overload]
            in_effect = int(value)  # type: ignore[call-overload]
        elif name == "dropout":
            set_dropout(t.model, float(value))  # type: ignore[arg-type]
            in_effect = float(value)  # type: ignore[arg-type]
        else:
            in_effect = value
        self.values[name] = value
        return in_effect

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
        for name in (*KNOBS, "lr_drop_factor"):
            version = snap.versions.get(name, 0)
            if version <= self._applied[name]:
                continue
            t0 = time.perf_counter()
            in_effect = self._apply_knob(name, snap.values[name])
            spent = time.perf_counter() - t0
            self._applied[name] = version
            actions.applied[name] = in_effect
            if self.registry is not None and name in KNOBS:
                self.registry.mark_applied(name, step=step, version=version, value=in_effect,
                                           data={**where, "apply_s": spent})
        for name in TRIGGERS:
            count = snap.fires.get(name, 0) - self._handled[name]
            if count <= 0:
                continue
            self._handled[name] += count
            if self.registry is not None:
                for _ in range(count):
                    self.triggers[name].fired(step=step)
            if name == "checkpoint":
                actions.checkpoint = count
            elif name == "evaluate":
                actions.evaluate = count
            elif name == "stop":
                actions.stop = True
            else:
                actions.lr_drops = count
        for _ in range(actions.lr_drops):
            self._drop_lr(step, where, actions)
        actions.seconds = time.perf_counter() - started
        return actions

    def _drop_lr(self, step: int, where: dict[str, int], actions: Actions) -> None:
        new = min(LR_MAX, max(LR_MIN, float(self.values["learning_rate"])  # type: ignore[arg-type]
                              * float(self.values["lr_drop_factor"])))  # type: ignore[arg-type]
        in_effect = self._apply_knob("learning_rate", new)
        actions.applied["learning_rate"] = in_effect
        if self.registry is not None:
            event = self.registry.set({"learning_rate": new}, source="lr_drop")[0]
            self._applied["learning_rate"] = event.v
            self.registry.mark_applied("learning_rate", step=step, version=event.v,
                                       value=in_effect, data={**where, "lr_drop": True})

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
                for event in self.registry.set(changed, source=source):
                    self._applied[event.name] = event.v
                    if event.name in KNOBS:
                        self.registry.mark_applied(event.name, version=event.v,
                                                   data={"resume": True})
        for name, value in values.items():
            self._apply_knob(name, value)
