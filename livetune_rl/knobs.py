"""Deferred knobs: live variables a training loop applies at its own safe points.

A knob pairs a :class:`~livetune_rl.registry.LiveVariable` with the function that puts its
value into effect (write an optimizer's learning rate, swap an SB3 schedule, resize a batch).
The network thread only records the new value; the training thread calls
:meth:`Knobs.apply_pending` at a safe point, which costs one int comparison when nothing
changed, and journals an ``applied`` record with the training step for every knob it applies.

This is the one safe-point mechanism of the package: the SB3 callbacks, the vision loop and
``livetune demo`` all apply their knobs through it.

* **Cadence**: each knob names the safe point that applies it (``cadence="step"``,
  ``"rollout"``...); ``apply_pending(cadence=...)`` applies only those, ``apply_pending()``
  all of them.
* **Group knobs** (:meth:`Knobs.add_group`): variables put into effect together by one
  function that receives all of their values (reward weights pushed to every env at once).
* **Read, then apply** (:meth:`Knobs.read`, :meth:`Knobs.apply`): the values read at one
  instant can be applied elsewhere, e.g. by every rank of a DDP job; a *follower*
  (:meth:`Knobs.follower`, no registry) applies what the leader read.

A set that races with an apply is applied at the next safe point, never lost: the version is
read before the value, and only that version is marked applied. An apply that raises is logged
and journaled as applied with the error; the knob is retried at its next set.

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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .journal import ChangeEvent
from .registry import LiveVariable, Registry, default_registry
from .values import Check, Value

log = logging.getLogger(__name__)

Apply = Callable[[Value], "Value | None"]
"""Puts a value into effect; may return the value really in effect (if it differs)."""

GroupApply = Callable[[dict[str, Value]], "Mapping[str, Any] | None"]
"""Puts the values of every variable of a group into effect together (changed or not); may
return data journaled with each applied record."""

DEFAULT_CADENCE = "default"


@dataclass(frozen=True)
class Reading:
    """Versions and values of knobs read at one instant (each version read before its value).

    The unit a leader hands to followers (:meth:`Knobs.apply` on every DDP rank)."""

    versions: dict[str, int]
    values: dict[str, Value]


@dataclass(frozen=True)
class Applied:
    """One knob :meth:`Knobs.apply` put into effect."""

    name: str
    value: Value
    """the value in effect (what the apply function returned, else the value read)"""
    event: ChangeEvent | None
    """the ``applied`` journal record (None on a follower)"""


@dataclass
class _Group:
    names: tuple[str, ...]
    apply: GroupApply


@dataclass
class Knob:
    """One deferred knob: its variable (None on a follower) and how it is put into effect."""

    name: str
    var: LiveVariable | None
    apply: Apply | None
    cadence: str = DEFAULT_CADENCE
    group: _Group | None = None
    applied: int = 0
    """version last applied (the follower's record; a leader reads its variable's)"""


class Knobs:
    """A set of deferred knobs of one training loop, applied together at safe points.

    Args:
        registry: where the knobs are registered (default: the process-wide registry).
        timed: add each apply's duration in seconds to its journal record (``apply_s``).
    """

    def __init__(self, registry: Registry | None = None, *, timed: bool = False) -> None:
        self._setup(registry if registry is not None else default_registry(), timed)

    def _setup(self, registry: Registry | None, timed: bool) -> None:
        self.registry = registry
        self.timed = timed
        self._knobs: dict[str, Knob] = {}
        self._seen: dict[str | None, int] = {}

    @classmethod
    def follower(cls, *, timed: bool = False) -> Knobs:
        """Knobs with no registry: they apply the :class:`Reading` a leader made (DDP ranks
        other than 0); knobs are declared with :meth:`follow`; nothing is journaled.

        Example::

            >>> seen = []
            >>> knobs = Knobs.follower()
            >>> knobs.follow("lr", seen.append)
            >>> [a.name for a in knobs.apply(Reading({"lr": 3}, {"lr": 0.2}), step=1)], seen
            (['lr'], [0.2])
        """
        knobs = cls.__new__(cls)
        knobs._setup(None, timed)
        return knobs

    # ----------------------------------------------------------------- registration
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
        cadence: str = DEFAULT_CADENCE,
    ) -> LiveVariable:
        """Register a deferred live variable ``name`` applied by ``apply(value)`` at the safe
        points of ``cadence`` (a follower uses :meth:`follow`)."""
        if self.registry is None:
            raise TypeError(f"cannot register {name!r}: these knobs follow a leader's "
                            "readings and have no registry; use follow()")
        var = LiveVariable(name, default, min=min, max=max, choices=choices, help=help,
                           check=check, deferred=True, registry=self.registry)
        self._knobs[name] = Knob(name, var, apply, cadence)
        self._seen.clear()
        return var

    def follow(self, name: str, apply: Apply, *, cadence: str = DEFAULT_CADENCE) -> None:
        """On a follower: apply ``name`` when a leader's :class:`Reading` has a newer version
        of it."""
        self._knobs[name] = Knob(name, None, apply, cadence)

    def adopt(self, var: LiveVariable, apply: Apply, *,
              cadence: str = DEFAULT_CADENCE) -> LiveVariable:
        """Apply an existing variable as a knob (it must be in this registry)."""
        var.deferred = True
        self._knobs[var.name] = Knob(var.name, var, apply, cadence)
        self._seen.clear()
        return var

    def add_group(self, variables: Sequence[LiveVariable], apply: GroupApply, *,
                  cadence: str = DEFAULT_CADENCE) -> None:
        """Apply existing variables together: when any of them was set, ``apply(values)``
        receives the value of every one (a dict by name) and the data it returns is journaled
        with each changed one's ``applied`` record.

        Example::

            >>> reg = Registry()
            >>> a = LiveVariable("w.a", 1.0, registry=reg)
            >>> b = LiveVariable("w.b", 2.0, registry=reg)
            >>> pushed = []
            >>> knobs = Knobs(reg)
            >>> knobs.add_group([a, b], lambda values: pushed.append(values) or {"envs": 4})
            >>> _ = reg.set({"w.b": 5.0})
            >>> [(e.name, e.data) for e in knobs.apply_pending(step=3)], pushed
            ([('w.b', {'envs': 4})], [{'w.a': 1.0, 'w.b': 5.0}])
        """
        group = _Group(tuple(v.name for v in variables), apply)
        for var in variables:
            var.deferred = True
            self._knobs[var.name] = Knob(var.name, var, None, cadence, group)
        self._seen.clear()

    def __contains__(self, name: object) -> bool:
        return name in self._knobs

    def __getitem__(self, name: str) -> LiveVariable:
        var = self._knobs[name].var
        if var is None:
            raise KeyError(f"{name!r} is a follower's knob: it has no live variable")
        return var

    def names(self, cadence: str | None = None) -> list[str]:
        """The knobs' names (of one cadence, or all)."""
        return [n for n, k in self._knobs.items() if cadence is None or k.cadence == cadence]

    # ----------------------------------------------------------------- applying
    def read(self, cadence: str | None = None, *, everything: bool = False) -> Reading:
        """The knobs set since they were last applied (``everything``: all of them), version
        read before value, so a set racing with the read is applied next time."""
        versions: dict[str, int] = {}
        values: dict[str, Value] = {}
        for name, knob in self._knobs.items():
            var = knob.var
            if var is None or (cadence is not None and knob.cadence != cadence):
                continue
            version = var.version
            if everything or version > var.applied_version:
                versions[name] = version
                values[name] = var.value
        return Reading(versions, values)

    def apply(self, reading: Reading, *, step: int | None = None,
              data: Mapping[str, Any] | None = None) -> list[Applied]:
        """Put into effect every knob of ``reading`` whose version was not applied yet and
        journal each (``step``, ``data``); on a follower, only apply.

        A failing apply is logged and journaled as applied with the error (training goes on;
        the knob is retried at its next set).
        """
        done: list[Applied] = []
        groups: dict[int, _Group] = {}
        for name, version in reading.versions.items():
            knob = self._knobs.get(name)
            if knob is None or version <= self._last_applied(knob):
                continue
            if knob.group is not None:
                groups.setdefault(id(knob.group), knob.group)
                continue
            value = reading.values[name]
            started = time.perf_counter()
            extra: dict[str, Any] = {}
            try:
                assert knob.apply is not None
                in_effect = knob.apply(value)
            except Exception as exc:  # never let a knob kill the training run
                log.exception("livetune: applying %s=%r failed", name, value)
                in_effect, extra = None, {"error": f"{type(exc).__name__}: {exc}"}
            value = value if in_effect is None else in_effect
            done.append(self._mark(knob, version, value, step, data, extra, started))
        for group in groups.values():
            done.extend(self._apply_group(group, reading, step, data))
        return done

    def apply_pending(self, step: int | None = None,
                      cadence: str | None = None) -> list[ChangeEvent]:
        """Apply every knob (of ``cadence``, or all) set since it was last applied; journal
        each with ``step``. One int comparison when nothing was set since the last call.

        A knob whose apply function raises is logged and journaled as applied with the error
        (the variable keeps its value, training goes on); it is retried at the next set.
        """
        registry = self.registry  # the step loop's hot path: one int comparison
        if registry is not None:
            version = registry.version
            if self._seen.get(cadence) == version:
                return []
            self._seen[cadence] = version  # first: a set racing with us is seen next time
        return [a.event for a in self.apply(self.read(cadence), step=step)
                if a.event is not None]

    def _last_applied(self, knob: Knob) -> int:
        return knob.var.applied_version if knob.var is not None else knob.applied

    def _mark(self, knob: Knob, version: int, value: Value, step: int | None,
              data: Mapping[str, Any] | None, extra: Mapping[str, Any],
              started: float) -> Applied:
        knob.applied = version
        event = None
        if self.registry is not None:
            record = {**(data or {}), **extra}
            if self.timed:
                record["apply_s"] = time.perf_counter() - started
            # the value applied, not var.value: a set racing with the apply changed that
            event = self.registry.mark_applied(knob.name, step=step, version=version,
                                               value=value, data=record)
        return Applied(knob.name, value, event)

    def _apply_group(self, group: _Group, reading: Reading, step: int | None,
                     data: Mapping[str, Any] | None) -> list[Applied]:
        changed = {n: reading.versions[n] for n in group.names
                   if n in reading.versions
                   and reading.versions[n] > self._last_applied(self._knobs[n])}
        values: dict[str, Value] = {}
        for name in group.names:  # the changed members' read values, the others' current
            var = self._knobs[name].var
            assert var is not None  # a group is made of live variables (add_group)
            values[name] = reading.values.get(name, var.value)
        started = time.perf_counter()
        extra: dict[str, Any]
        try:
            extra = dict(group.apply(dict(values)) or {})
        except Exception as exc:  # never let a knob kill the training run
            log.exception("livetune: applying %s failed",
                          ", ".join(f"{n}={values[n]!r}" for n in changed))
            extra = {"error": f"{type(exc).__name__}: {exc}"}
        return [self._mark(self._knobs[n], v, values[n], step, data, extra, started)
                for n, v in changed.items()]

    def close(self) -> None:
        """Unregister every knob's variable (so a new training loop can register them)."""
        registry = self.registry
        if registry is not None:
            for name in list(self._knobs):
                if name in registry:
                    registry.remove(name)
        self._knobs.clear()
        self._seen.clear()
