"""What the page is sent: runs, variables, triggers and journal records as JSON objects, and
which control fits each variable.

The control is chosen here, once, from the variable's type, bounds and choices
(:func:`control_for`); the page draws what it is told. A learning rate gets a log-scale
slider, a bounded number a linear one, a choice a select, a bool a switch; every number also
gets a field to type into (the slider is a help, the field says exactly what is sent).

Example::

    >>> from livetune_rl.registry import LiveVariable, Registry
    >>> reg = Registry()
    >>> control_for(LiveVariable("learning_rate", 1e-3, min=0.0, max=10.0, registry=reg).state())
    Control(kind='log', low=1e-07, high=1.0)
    >>> control_for(LiveVariable("reward.scale", 1.0, min=-10, max=10, registry=reg).state())
    Control(kind='linear', low=-10.0, high=10.0)
    >>> control_for(LiveVariable("optimizer", "adam", choices=["adam", "sgd"],
    ...                          registry=reg).state()).kind
    'select'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..journal import ChangeEvent
from ..state import RegistryState, TriggerState, VariableState
from ..values import VarType

ControlKind = Literal["log", "linear", "number", "select", "switch", "text"]
LOG_NAMES = ("learning_rate", "lr")
"""Last parts of the names of rates that get a log slider even when their bounds start at 0."""
LOG_DECADES = 3.0  # a positive range this many decades wide or wider is drawn on a log scale
LOG_SPAN_BELOW, LOG_SPAN_ABOVE = 1e4, 1e3  # a rate's slider around its default, in bounds
MAX_LINEAR_STEPS = 10_000  # an int range wider than this gets a field only


@dataclass(frozen=True)
class Control:
    """How the page lets a person change one variable: ``kind``, and the slider's ends."""

    kind: ControlKind
    low: float | None = None
    high: float | None = None


def _log_range(var: VariableState) -> tuple[float, float] | None:
    low = float(var.min) if isinstance(var.min, (int, float)) else None
    high = float(var.max) if isinstance(var.max, (int, float)) else None
    if low is not None and low > 0 and high is not None \
            and math.log10(high / low) >= LOG_DECADES:
        return low, high
    value = float(var.default)  # type: ignore[arg-type]  (the default: ends that stay put)
    if var.name.rsplit(".", 1)[-1] in LOG_NAMES and value > 0 and (low is None or low >= 0):
        lo = max(low or 0.0, value / LOG_SPAN_BELOW)
        hi = min(high if high is not None else math.inf, value * LOG_SPAN_ABOVE)
        return float(f"{lo:.6g}"), float(f"{hi:.6g}")
    return None


def control_for(var: VariableState) -> Control:
    """The control that fits ``var`` (see the module docstring)."""
    if var.choices:
        return Control("select")
    if var.type is VarType.BOOL:
        return Control("switch")
    if var.type is VarType.STR:
        return Control("text")
    if var.type is VarType.FLOAT:
        log = _log_range(var)
        if log is not None:
            return Control("log", *log)
    if isinstance(var.min, (int, float)) and isinstance(var.max, (int, float)):
        low, high = float(var.min), float(var.max)
        if var.type is VarType.FLOAT or high - low <= MAX_LINEAR_STEPS:
            return Control("linear", low, high)
    return Control("number")


def variable_json(var: VariableState) -> dict[str, Any]:
    """Every field of the state record, ``pending``, and the control to draw."""
    record = asdict(var)
    record["type"] = var.type.value
    record["choices"] = list(var.choices)
    record["pending"] = var.pending
    record["control"] = asdict(control_for(var))
    return record


def trigger_json(trig: TriggerState) -> dict[str, Any]:
    """A trigger's published state and the fires not handled yet."""
    return {"name": trig.name, "help": trig.help, "fires": trig.fires, "handled": trig.handled,
            "pending": trig.pending, "version": trig.version, "last_fired": trig.last_fired,
            "source": trig.source}


def state_json(state: RegistryState) -> dict[str, Any]:
    """A registry snapshot: version, step, variables and triggers."""
    return {"version": state.version, "step": state.step,
            "variables": [variable_json(v) for v in state.variables],
            "triggers": [trigger_json(t) for t in state.triggers]}


def event_json(event: ChangeEvent) -> dict[str, Any]:
    """A journal record as the journal holds it (``to_record``), every field present.

    Example::

        >>> event_json(ChangeEvent(3, 10.0, "set", "lr", 0.1, 0.2, "me", 5))["new"]
        0.2
    """
    return {"v": event.v, "t": event.t, "kind": event.kind, "name": event.name,
            "old": event.old, "new": event.new, "source": event.source, "step": event.step,
            "applies": event.applies, "data": event.data}
