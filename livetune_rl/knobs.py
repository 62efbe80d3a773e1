"""Deferred knobs: live variables a training loop applies at its own safe points.

A knob pairs a :class:`~livetune_rl.registry.LiveVariable` with the function that puts its
value into effect (write an optimizer's learning rate, swap an SB3 schedule, resize a batch).
The network thread only records the new value; the training thread calls
:meth:`Knobs.apply_pending` at a safe point, which costs one int comparison when nothing
changed, and journals an ``applied`` record with the training step for every knob it applies.

Example::

    >>> from livetune_rl import Registry
    >>> reg = Registry()
    >>> knobs = Knobs(reg)
    >>> state = {"lr": 0.1}
    >>> lr = knobs.add("learning_rate", 0.1, lambda v: state.__setitem__("lr", v), min=0.0)
    >>> _ = reg.set({"learning_rate": 0.01})
    >>> [e.name for e in knobs.apply_pending(step=100)], state["lr"], lr.pending
    (['learning_rate'], 0.01, False)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .journal import ChangeEvent
from .registry import LiveVariable, Registry, default_registry
from .values import Check, Value

log = logging.getLogger(__name__)

Apply = Callable[[Value], "Value | None"]
"""Puts a value into effect; may return the value really in effect (if it differs)."""


@dataclass
class Knob:
    var: LiveVariable
    apply: Apply


class Knobs:
    """A set of deferred knobs of one training loop, applied together at safe points."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else default_registry()
        self._knobs: dict[str, Knob] = {}
        self._seen = -1

    def add(
        self,
        name: str,
        default: Value,
        apply: Apply,
        *,
        min: float | int | None = None,
        max: float | int | None = None,
        choices: Sequence[Value] | None = None,
        help: str = "",
        check: Check | None = None,
    ) -> LiveVariable:
        """Register a deferred live variable ``name`` applied by ``apply(value)``."""
        var = LiveVariable(name, default, min=min, max=max, choices=choices, help=help,
                           check=check, deferred=True, registry=self.registry)
        self._knobs[name] = Knob(var, apply)
        self._seen = -1
        return var

    def adopt(self, var: LiveVariable, apply: Apply) -> LiveVariable:
        """Apply an existing variable as a knob (it must be in this registry)."""
        var.deferred = True
        self._knobs[var.name] = Knob(var, apply)
        self._seen = -1
        return var

    def __contains__(self, name: object) -> bool:
        return name in self._knobs

    def __getitem__(self, name: str) -> LiveVariable:
        return self._knobs[name].var

    def names(self) -> list[str]:
        return list(self._knobs)

    def apply_pending(self, step: int | None = None) -> list[ChangeEvent]:
        """Apply every knob set since it was last applied; journal each with ``step``.

        A knob whose apply function raises is logged and journaled as applied with the error
        (the variable keeps its value, training goes on); it is retried at the next set.
        """
        if self.registry.version == self._seen:
            return []
        self._seen = self.registry.version
        events = []
        for knob in self._knobs.values():
            var = knob.var
            version = var.version  # read version before value: a racing set is re-applied
            if version <= var.applied_version:
                continue
            value = var.value
            data: dict[str, str] = {}
            try:
                in_effect = knob.apply(value)
            except Exception as exc:  # never let a knob kill the training run
                log.exception("livetune: applying %s=%r failed", var.name, value)
                in_effect, data = None, {"error": f"{type(exc).__name__}: {exc}"}
            # the value applied, not var.value: a set racing with the apply changed that
            event = self.registry.mark_applied(var.name, step=step, version=version,
                                               value=value if in_effect is None else in_effect,
                                               data=data)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> None:
        """Unregister every knob's variable (so a new training loop can register them)."""
        for name in list(self._knobs):
            if name in self.registry:
                self.registry.remove(name)
        self._knobs.clear()
