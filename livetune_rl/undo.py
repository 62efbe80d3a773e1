"""Undo: revert changes of values as new, journaled sets that name the versions they undo.

The journal is the undo history. The changes that can be undone are its ``set`` records that
are neither undos themselves nor undone by one: an undo is journaled as an ordinary set whose
source is ``undo of v<N>[,v<M>...] by <who>``, so the next undo goes one change further back
(``livetune undo`` twice undoes the last two changes) and every tool reading the journal sees
what was reverted, by whom. Fires are never undone (an evaluation cannot be taken back).

A variable gets back the value it had before the oldest change undone. An undo is refused
(:class:`UndoConflictError`, gRPC ``FAILED_PRECONDITION``) when a later change that this undo
leaves in place touched the same variable (undoing ``v5`` of ``learning_rate`` after ``v9``
changed it again) unless ``force``; and it is a compare-and-set, so a set that arrives while
the undo is planned refuses it too, whatever ``force`` says.

Example::

    >>> from livetune_rl import LiveVariable, Registry
    >>> import tempfile, os
    >>> reg = Registry(journal=os.path.join(tempfile.mkdtemp(), "journal.jsonl"))
    >>> lr = LiveVariable("lr", 0.1, registry=reg)
    >>> scale = LiveVariable("scale", 1.0, registry=reg)
    >>> _ = reg.set({"lr": 0.01}); _ = reg.set({"scale": 2.0})
    >>> [(e.name, e.new, e.source) for e in undo(reg, count=2, who="alice")]
    [('scale', 1.0, 'undo of v3,v2 by alice'), ('lr', 0.1, 'undo of v3,v2 by alice')]
    >>> undo(reg, who="alice")
    Traceback (most recent call last):
    ...
    livetune_rl.values.InvalidValueError: nothing to undo: every change of values ...
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .journal import ChangeEvent, read_journal
from .registry import Registry
from .values import InvalidValueError, LiveTuneError, Value, VersionConflictError

_SOURCE = re.compile(r"^undo of (v\d+(?:,v\d+)*)(?: by .*)?$", re.DOTALL)


class UndoConflictError(VersionConflictError):
    """A later change, left in place by the undo, touched a variable it would revert.
    Maps to gRPC ``FAILED_PRECONDITION``."""


def undo_source(versions: Sequence[int], who: str) -> str:
    """The source an undo's sets are journaled with.

    Example::

        >>> undo_source([9, 5], "alice"), undone_versions(undo_source([9, 5], "alice"))
        ('undo of v9,v5 by alice', (9, 5))
    """
    return f"undo of {','.join(f'v{v}' for v in versions)} by {who}"


def undone_versions(source: str) -> tuple[int, ...]:
    """The versions a set with this source undid (empty: not an undo)."""
    match = _SOURCE.match(source)
    if match is None:
        return ()
    return tuple(int(v[1:]) for v in match.group(1).split(","))


@dataclass(frozen=True)
class Revert:
    """One variable an undo sets back.

    :param name: the variable.
    :param value: the value it had before the oldest change undone.
    :param undoes: the versions of its changes undone, newest first.
    :param expected: the version it must still be at when the undo commits.
    """

    name: str
    value: Value
    undoes: tuple[int, ...]
    expected: int


@dataclass(frozen=True)
class UndoPlan:
    """What an undo sets, one :class:`Revert` per variable (newest change first)."""

    reverts: tuple[Revert, ...]

    @property
    def versions(self) -> tuple[int, ...]:
        """Every version undone, newest first."""
        return tuple(sorted((v for r in self.reverts for v in r.undoes), reverse=True))

    def apply(self, registry: Registry, who: str) -> list[ChangeEvent]:
        """Set every revert in one atomic, compare-and-set request; the journaled changes.

        :param registry: the run's registry (the one that keeps the journal).
        :param who: who asked (a peer address), journaled in the source.
        :raises VersionConflictError: a variable changed since the plan was made.
        """
        try:
            return registry.set({r.name: r.value for r in self.reverts},
                                expected={r.name: r.expected for r in self.reverts},
                                source=undo_source(self.versions, who))
        except VersionConflictError as exc:
            raise VersionConflictError(f"{exc} while the undo was planned; nothing was "
                                       "changed: look at livetune history, then undo "
                                       "again") from None


def undoable(events: Iterable[ChangeEvent]) -> list[ChangeEvent]:
    """The sets of ``events`` that can be undone (not undos, not undone), oldest first."""
    sets = [e for e in events if e.kind == "set"]
    undone = {v for e in sets for v in undone_versions(e.source)}
    return [e for e in sets if e.v not in undone and not undone_versions(e.source)]


def plan_undo(events: Iterable[ChangeEvent], current: Mapping[str, int], *, count: int = 1,
              versions: Sequence[int] = (), force: bool = False) -> UndoPlan:
    """Plan the undo of the last ``count`` changes of ``events`` (or of ``versions``).

    :param events: the run's journal records, in order.
    :param current: the version each variable is at now.
    :param count: how many of the last changes to undo (ignored when ``versions`` is given).
    :param versions: undo these sets instead.
    :param force: revert even where a later change, left in place, touched the variable.
    :raises InvalidValueError: a count beyond what there is to undo, a version that is not a
        set that can be undone.
    :raises UndoConflictError: a later change touched a variable it would revert.
    """
    events = list(events)
    candidates = undoable(events)
    if versions:
        by_version = {e.v: e for e in candidates}
        chosen = []
        for version in dict.fromkeys(versions):
            if version not in by_version:
                raise InvalidValueError(_not_undoable(version, events))
            chosen.append(by_version[version])
    else:
        if count < 1:
            raise InvalidValueError(f"undo {count}: the count of changes to undo is at least 1")
        if not candidates:
            raise InvalidValueError("nothing to undo: every change of values in the journal "
                                    "is undone already (or it has none)")
        if count > len(candidates):
            raise InvalidValueError(f"undo {count}: only {len(candidates)} change(s) can be "
                                    "undone (livetune history shows them)")
        chosen = candidates[-count:]
    taken = {e.v for e in chosen}
    reverts = []
    for name in dict.fromkeys(e.name for e in sorted(chosen, key=lambda e: -e.v)):
        mine = sorted((e for e in chosen if e.name == name), key=lambda e: e.v)
        later = [e for e in candidates
                 if e.name == name and e.v > mine[0].v and e.v not in taken]
        if later and not force:
            last = later[-1]
            raise UndoConflictError(
                f"cannot undo v{mine[0].v} ({name} {mine[0].old!r} -> {mine[0].new!r}): "
                f"v{last.v} changed {name} after it (to {last.new!r}) and stays; undo "
                f"v{last.v} too, or pass --force to set {name} back to {mine[0].old!r} anyway")
        if name not in current:
            raise InvalidValueError(f"cannot undo v{mine[0].v}: this run has no variable "
                                    f"named {name} any more")
        reverts.append(Revert(name, mine[0].old, tuple(e.v for e in reversed(mine)),
                              current[name]))
    return UndoPlan(tuple(reverts))


def _not_undoable(version: int, events: list[ChangeEvent]) -> str:
    record = next((e for e in events if e.v == version), None)
    if record is None:
        return f"v{version} is not in the journal: undo takes the version of a set"
    if record.kind != "set":
        return (f"v{version} is a {record.kind} record of {record.name or 'the run'}, not a "
                "set: only changes of values can be undone")
    if undone_versions(record.source):
        return f"v{version} is itself an undo: undo the last change again to redo it"
    by = next(e.v for e in events if record.v in undone_versions(e.source))
    return f"v{version} was undone already, by v{by}"


def plan_for(registry: Registry, *, count: int = 1, versions: Sequence[int] = (),
             force: bool = False) -> UndoPlan:
    """Plan an undo from ``registry``'s journal and the versions its variables are at.

    :raises LiveTuneError: the registry keeps no journal (there is no history to undo).
    """
    journal = registry.journal
    if journal is None:
        raise LiveTuneError("this run keeps no journal, so there is no history to undo")
    current = {var.name: var.version for var in registry.variables()}
    return plan_undo(read_journal(journal.path), current, count=count, versions=versions,
                     force=force)


def undo(registry: Registry, *, count: int = 1, versions: Sequence[int] = (),
         force: bool = False, who: str = "local") -> list[ChangeEvent]:
    """Undo the last ``count`` changes (or ``versions``) of ``registry``; the sets made.

    :param registry: a registry that keeps a journal.
    :param count: how many of the last changes to undo.
    :param versions: undo these sets instead.
    :param force: revert even where a later change touched the same variable.
    :param who: journaled in the source (``undo of v9 by <who>``).
    """
    return plan_for(registry, count=count, versions=versions, force=force).apply(registry, who)
