"""Which changes the panel's Undo button reverts: the newest set *request* that can be undone.

The run's own undo (``livetune undo``, the ``Undo`` RPC of ``livetune.v1``,
:mod:`livetune_rl.undo`) reverts changes by version, compare-and-set, as journaled sets that
name the versions they undo; the panel only chooses the versions. A request of the panel sets
several variables at once and is journaled as one ``set`` record per variable, committed
together (the same time, the same source, consecutive versions): the button undoes all of
them. Undos and what they undid are not candidates, so pressing Undo again goes one request
further back, as ``livetune undo`` does.

Example::

    >>> from livetune_rl.journal import ChangeEvent
    >>> history = [ChangeEvent(4, 1.0, "set", "lr", 0.1, 0.2, "cli"),
    ...            ChangeEvent(5, 2.0, "set", "lr", 0.2, 0.3, "panel"),
    ...            ChangeEvent(6, 2.0, "set", "clip", 0.1, 0.3, "panel"),
    ...            ChangeEvent(7, 2.5, "applied", "lr", None, 0.3, "training", applies=5)]
    >>> newest_request(history)
    (5, 6)
    >>> newest_request(history + [ChangeEvent(8, 3.0, "set", "lr", 0.3, 0.2,
    ...                                       "undo of v6,v5 by panel")])
    (4,)
"""

from __future__ import annotations

from collections.abc import Sequence

from ..journal import ChangeEvent
from ..undo import undoable


def newest_request(history: Sequence[ChangeEvent]) -> tuple[int, ...]:
    """The versions of the newest set request in ``history`` (oldest record first) that can
    still be undone; empty when there is none."""
    sets = undoable(history)
    if not sets:
        return ()
    group = [sets[-1]]
    for event in reversed(sets[:-1]):
        if (event.t, event.source) != (group[0].t, group[0].source) or event.v != group[-1].v - 1:
            break
        group.append(event)
    return tuple(sorted(e.v for e in group))
