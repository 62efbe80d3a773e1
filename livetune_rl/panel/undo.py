"""Undo of a run's last set, through the existing API: a compare-and-set back to the old values.

A set request is journaled as one ``set`` record per variable it changed, committed together:
the same time, the same source, consecutive versions. Undoing it sets each of those variables
back to its ``old`` value with ``expected_version`` = the version that set gave it, in one
request: if anything changed one of them since, the server refuses the whole undo
(``FAILED_PRECONDITION``) and nothing changes. The undo is itself a set, journaled with the
panel as its source; undoing again redoes.

Example::

    >>> from livetune_rl.journal import ChangeEvent
    >>> history = [ChangeEvent(4, 1.0, "set", "lr", 0.1, 0.2, "cli"),
    ...            ChangeEvent(5, 2.0, "set", "lr", 0.2, 0.3, "panel"),
    ...            ChangeEvent(6, 2.0, "set", "clip", 0.1, 0.3, "panel"),
    ...            ChangeEvent(7, 2.5, "applied", "lr", None, 0.3, "training", applies=5)]
    >>> last_set(history)
    UndoPlan(values={'lr': 0.2, 'clip': 0.1}, expected={'lr': 5, 'clip': 6})
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..journal import ChangeEvent
from ..values import Value


@dataclass(frozen=True)
class UndoPlan:
    """The set that undoes a request: the old values, and the versions they must still be at."""

    values: dict[str, Value]
    expected: dict[str, int]


def last_set(history: Sequence[ChangeEvent]) -> UndoPlan | None:
    """The undo of the newest set request in ``history`` (oldest record first); None when
    there is no set to undo (a record without its old value cannot be undone either)."""
    sets = [e for e in history if e.kind == "set" and not e.unchanged]
    if not sets:
        return None
    newest = sets[-1]
    group = [newest]
    for event in reversed(sets[:-1]):
        if (event.t, event.source) != (newest.t, newest.source) or event.v != group[-1].v - 1:
            break
        group.append(event)
    group.reverse()
    if any(e.old is None for e in group):
        return None
    return UndoPlan({e.name: e.old for e in group},  # type: ignore[misc]
                    {e.name: e.v for e in group})
