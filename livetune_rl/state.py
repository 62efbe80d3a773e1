"""The state records: immutable copies of a registry's variables and triggers.

One record per concept, which every layer converts from: the registry takes them
(:meth:`~livetune_rl.registry.Registry.state`), the server turns them into ``livetune.v1``
messages and the client back (:mod:`livetune_rl.convert`), the serving process of
``serve(out_of_process=True)`` is sent them to mirror the training process's registry, and
``livetune ls --json`` prints them. A variable's *published* fields (what a set or an apply
changes) are named once, in :data:`VariableState.PUBLISHED`.

Example::

    >>> from livetune_rl.registry import LiveVariable, Registry
    >>> state = LiveVariable("lr", 0.1, min=0.0, registry=Registry()).state()
    >>> state.value, state.min, state.pending
    (0.1, 0.0, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .values import Value, VarType


@dataclass(frozen=True)
class VariableState:
    """An immutable copy of a variable: its definition and its published state."""

    name: str
    type: VarType
    value: Value
    default: Value
    min: Value | None
    max: Value | None
    choices: tuple[Value, ...]
    help: str
    version: int
    changed_at: float
    source: str
    step: int | None
    deferred: bool
    applied_version: int
    applied_step: int | None

    # the fields a set or an apply replaces on the live variable (the rest define it)
    PUBLISHED: ClassVar[tuple[str, ...]] = (
        "value", "version", "changed_at", "source", "step", "applied_version", "applied_step")

    @property
    def pending(self) -> bool:
        """True while a deferred knob has a set the training loop has not applied yet."""
        return self.deferred and self.applied_version < self.version


@dataclass(frozen=True)
class TriggerState:
    """An immutable copy of a trigger's state.

    ``max_pending`` and ``coalesced`` are not part of the ``livetune.v1`` messages: a state
    read from a server has their defaults.
    """

    name: str
    help: str
    fires: int
    handled: int
    version: int
    last_fired: float | None
    source: str
    max_pending: int | None = 1
    coalesced: int = 0

    # the fields a fire or its handling replaces on the live trigger
    PUBLISHED: ClassVar[tuple[str, ...]] = (
        "fires", "handled", "version", "last_fired", "source", "coalesced")

    @property
    def pending(self) -> int:
        """Fires not yet handled by the training loop."""
        return self.fires - self.handled


@dataclass(frozen=True)
class RegistryState:
    """A consistent snapshot of a registry, taken under its writer lock."""

    version: int
    step: int | None
    variables: tuple[VariableState, ...]
    triggers: tuple[TriggerState, ...]

    def values(self) -> dict[str, Value]:
        """``{name: value}`` of every variable in the snapshot."""
        return {v.name: v.value for v in self.variables}
