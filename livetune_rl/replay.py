"""Replay plans: the changes a run put into effect, read from its journal, step by step.

A run's journal says, for every change the training loop put into effect, at which step it did
(an ``applied`` record: ``step`` and ``applies``, the version of the set or fire it applied).
:meth:`ReplayPlan.from_journal` turns that into a list of :class:`Change`: each set (with its
value) or fire, the step it was applied at, and the original version it came from. A replay
(``livetune replay``; :class:`Replayer` inside any loop, and its SB3 form
:class:`~livetune_rl.sb3.replay.ReplayCallback`) makes each change again, just before the same
safe point at the same step, so the same code applies it; :mod:`livetune_rl.export` turns the
same plan into schedules.

A ``livetune train-vision`` run journals its safe points' ``epoch`` and ``iteration`` with
each applied record (``step`` is its global iteration). Its first safe point of an epoch has
the same step as the last one of the epoch before (no batch between them, but that epoch's
evaluation and schedule step), so a vision change is placed by :attr:`Change.position`: its
step, then its epoch.

Only applied changes are in a plan: a set still pending when the run ended changed nothing
(:attr:`ReplayPlan.unapplied` lists them). Several sets of one variable applied together (a
value changed twice between two safe points) are all replayed, in order, before that safe point:
the loop then applies the last one, as the original did.

This module is pure Python (no torch, no SB3): ``livetune export`` and the checks of
``livetune replay`` use it before anything heavy is imported.

Example::

    >>> import json, os, tempfile
    >>> lines = [
    ...     {"v": 1, "t": 1.0, "kind": "start", "name": "", "data": {"values": {"lr": 0.1}}},
    ...     {"v": 2, "t": 2.0, "kind": "set", "name": "lr", "old": 0.1, "new": 0.01,
    ...      "source": "alice", "step": 300},
    ...     {"v": 3, "t": 3.0, "kind": "applied", "name": "lr", "new": 0.01,
    ...      "source": "training", "step": 512, "applies": 2}]
    >>> path = os.path.join(tempfile.mkdtemp(), "journal.jsonl")
    >>> with open(path, "w") as f:
    ...     _ = f.write("".join(json.dumps(line) + "\\n" for line in lines))
    ...     _ = f.write('{"v": 4, "t": 4.0, "ki')     # a torn last line
    >>> plan = ReplayPlan.from_journal(path)
    >>> plan.changes
    (Change(step=512, name='lr', kind='set', value=0.01, version=2, epoch=None, iteration=None),)
    >>> plan.start_values, len(plan.warnings)
    ({'lr': 0.1}, 1)
"""

from __future__ import annotations

import dataclasses
import operator
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .journal import ChangeEvent, parse_line
from .values import InvalidValueError, LiveTuneError, UnknownNameError, Value

if TYPE_CHECKING:
    from .registry import Registry, Subscription

RUN_SOURCES = frozenset({"resume", "command line", "lr_drop"})
"""Sources of sets the run makes itself from its settings, not in a plan since the replay makes
them too: ``resume`` (``livetune train --resume``, ``livetune fork`` and ``train-vision
--resume`` restore a checkpoint's values), ``command line`` (``train-vision --set``) and
``lr_drop`` (the learning rate a fired ``lr_drop`` of ``train-vision`` sets: the fire is in the
plan)."""

REPLAY_EVENT = "replay"
"""Name of the ``event`` records a replay journals: what it replays, and where it diverged."""

_SOURCE = re.compile(r"^replay of v(\d+)$")


def replay_source(version: int) -> str:
    """The ``source`` a replay journals its set or fire with: the original's version.

    Example::

        >>> replay_source(12), replayed_version(replay_source(12)), replayed_version("alice")
        ('replay of v12', 12, None)
    """
    return f"replay of v{version}"


def replayed_version(source: str) -> int | None:
    """The original version a replayed set or fire came from (None: not a replay's)."""
    match = _SOURCE.match(source)
    return int(match.group(1)) if match else None


class ReplayError(LiveTuneError, ValueError):
    """A run that cannot be replayed as asked (no journal, a knob or env the code does not
    have, a value the knob now refuses). Raised before training starts; ``livetune replay``
    prints it and exits with status 1."""


@dataclass(frozen=True)
class Change:
    """One change the original run put into effect, to make again at ``step``."""

    step: int
    """the training step the original applied it at (``num_timesteps`` for SB3)"""
    name: str
    kind: Literal["set", "fire"]
    value: Value | None
    """the value set (None for a fire)"""
    version: int
    """the original journal version of the set or fire"""
    epoch: int | None = None
    """the epoch of the safe point (``train-vision``; None for SB3)"""
    iteration: int | None = None
    """the iteration within that epoch (``train-vision``; None for SB3)"""

    @property
    def position(self) -> tuple[int, int]:
        """Where the change is made: ``(step, epoch)``, which orders the safe points of a
        ``train-vision`` run (one with no epoch comes first at its step).

        Example::

            >>> end = Change(96, "lr", "set", 0.01, 5, epoch=2, iteration=48)
            >>> start = Change(96, "lr", "set", 0.02, 6, epoch=3, iteration=0)
            >>> end.position < start.position, Change(96, "stop", "fire", None, 7).position
            (True, (96, -1))
        """
        return (self.step, -1 if self.epoch is None else self.epoch)

    def where(self) -> str:
        """``step N`` (and ``epoch E iteration I`` for a vision run), for messages."""
        return f"step {self.step}" + ("" if self.epoch is None else
                                      f" (epoch {self.epoch} iteration {self.iteration})")


@dataclass(frozen=True)
class ReplayPlan:
    """The changes of a journal, in the order the original applied them.

    :param changes: every applied set and fire, by step (version order within a step).
    :param start_values: the values in effect when the original started (its ``start``).
    :param source: the journal read.
    :param warnings: what could not be read or will not be replayed, one sentence each.
    :param unapplied: sets never applied (still pending when the original ended).
    :param end_step: where the plan was cut: ``until``, or the step a resumed run restarted
        from (its second ``start`` record); None when the whole journal was read.
    :param start_data: the rest of the original's ``start`` record (``settings``: the run's
        settings as it started; ``world_size`` and ``threads`` for a ``train-vision`` run).
    :param resumed: where the run was resumed after these changes, and what it did from
        there (None: it was not, or not before ``until``).
    """

    changes: tuple[Change, ...]
    start_values: Mapping[str, Value] = field(default_factory=dict)
    source: str = ""
    warnings: tuple[str, ...] = ()
    unapplied: tuple[Change, ...] = ()
    end_step: int | None = None
    start_data: Mapping[str, Any] = field(default_factory=dict)
    resumed: Resume | None = None

    def segments(self) -> list[ReplayPlan]:
        """This plan and the plans of each resume after it, in order."""
        plans = [self]
        while plans[-1].resumed is not None:
            plans.append(plans[-1].resumed.plan)
        return plans

    def history(self) -> tuple[Change, ...]:
        """Every change that made the run's final model, resumes included (the changes a
        run made after the checkpoint it was later resumed from are not: the resume undid
        them)."""
        return tuple(c for plan in self.segments() for c in plan.changes)

    @classmethod
    def from_journal(cls, path: str | os.PathLike[str], *,
                     until: int | None = None) -> ReplayPlan:
        """Read the plan of the journal at ``path`` (changes applied after ``until`` left out).

        The journal is read as far as it is whole: a torn or unreadable line (a killed
        process, a record from another livetune version) is skipped and named in
        :attr:`warnings`. A journal that goes on after a resume (a second ``start`` record,
        naming the checkpoint the run restarted from) is read as the plan up to that
        checkpoint, with the rest in :attr:`resumed`.

        :param path: a run's ``journal.jsonl``.
        :param until: keep only the changes applied at or before this step.
        :raises ReplayError: no journal at ``path``, or one without a single record.
        """
        warnings: list[str] = []
        events = _read(path, warnings)
        if not events:
            raise ReplayError(f"{path} holds no journal record: nothing to replay (a "
                              "journal is the journal.jsonl of a run directory)")
        return _segments(_split(events), str(path), until, warnings)

    def names(self) -> set[str]:
        """Every variable and trigger the plan changes (its resumes' too)."""
        return {change.name for change in self.history()}

    def check(self, registry: Registry) -> None:
        """Refuse a plan the running code cannot make: a name it does not register, a fire of
        a variable or a set of a trigger, a value its variable now refuses.

        :param registry: the registry of the run that replays (its knobs registered).
        :raises ReplayError: naming each problem and what to do.
        """
        problems: list[str] = []
        history = self.history()
        for name in sorted(self.names()):
            kinds = {c.kind for c in history if c.name == name}
            try:
                if "set" in kinds:
                    var = registry.variable(name)
                    for change in history:
                        if change.name == name and change.kind == "set":
                            var.spec.accept(name, change.value)
                if "fire" in kinds:
                    registry.trigger(name)
            except (UnknownNameError, InvalidValueError) as exc:
                problems.append(str(exc))
        if problems:
            raise ReplayError(
                "the journal does not fit this code, so the replay would not be the run it "
                f"records: {'; '.join(problems)}. Replay it with the livetune version, "
                "algorithm and env that made it, or replay up to the first such change "
                "with --until")

    def start_mismatches(self, values: Mapping[str, Value]) -> dict[str, tuple[Value, Value]]:
        """``{name: (original, here)}`` for each start value that differs from ``values``
        (names only one side has are left out)."""
        return {name: (old, values[name]) for name, old in self.start_values.items()
                if name in values and values[name] != old}


@dataclass(frozen=True)
class Resume:
    """A resume of a run (``livetune train --resume``, ``train-vision --resume``): it
    restarted from ``checkpoint``, written at ``step``, and made ``plan``'s changes from there.

    :param checkpoint: the checkpoint as the resume named it (its name says how far the run
        before it went: ``final``, ``step_N``, ``epoch_N.pt``...).
    :param step: the step the checkpoint was written at, where the steps restart.
    :param plan: the changes made after the resume.
    """

    checkpoint: str
    step: int
    plan: ReplayPlan

    @property
    def until(self) -> int | None:
        """How far the changes before the resume made its checkpoint: all of them for a
        ``final`` one (written after the last update), else up to its step."""
        return None if Path(self.checkpoint).name == "final" else self.step


class Replayer:
    """Makes the changes of a :class:`ReplayPlan` again, through a registry, as a training
    loop reaches the positions the original made them at; notices a change from anyone else
    and then stops (a new branch). Framework-free: the SB3 callback
    (:class:`~livetune_rl.sb3.replay.ReplayCallback`) and the ``train-vision`` hook
    (:class:`~livetune_rl.vision.replay.VisionReplay`) each call it from their loop.

    Call :meth:`start` once the knobs are registered, then :meth:`advance` at every safe point,
    *before* the loop reads its live values (so the change is applied by the same code, at the
    same safe point, as in the original), and :meth:`end` when training ends. Each change is
    journaled with the source ``replay of v<N>``.

    :param registry: the registry of the loop that replays.
    :param plan: the changes to make.
    :param key: the position of a change, comparable with what :meth:`advance` is given
        (default: its step, for loops whose step is the safe point's only coordinate).
    :param say: called with a line for each change made and for a divergence (None: quiet).

    Example::

        >>> from livetune_rl import LiveVariable, Registry
        >>> registry = Registry()
        >>> lr = LiveVariable("lr", 0.1, registry=registry)
        >>> replayer = Replayer(registry, ReplayPlan((Change(20, "lr", "set", 0.01, 4),)))
        >>> replayer.start(0)
        >>> for step in range(0, 40, 8):          # the loop's safe points
        ...     replayer.advance(step)
        ...     if lr.value != 0.1:
        ...         break
        >>> step, lr.value, lr.source, [c.version for c in replayer.late]
        (24, 0.01, 'replay of v4', [4])
        >>> replayer.end(24)
    """

    def __init__(self, registry: Registry, plan: ReplayPlan, *,
                 key: Callable[[Change], Any] = operator.attrgetter("step"),
                 say: Callable[[str], None] | None = None) -> None:
        self.registry, self.plan, self.key, self.say = registry, plan, key, say
        self.replayed = 0
        """changes made again so far"""
        self.late: list[Change] = []
        """changes made after their position (the replay's safe points do not meet the
        original's: another ``n_envs``, another batch size)"""
        self.unchanged: list[Change] = []
        """sets of the value the variable already held here (the start values differ)"""
        self.diverged: ChangeEvent | None = None
        """the first set or fire from outside the replay (None: none yet)"""
        self.diverged_at: int | None = None
        """the step at which the replay noticed it and stopped making the plan's changes"""
        self.noticed: list[ChangeEvent] = []
        """sets and fires from outside the replay, as the registry published them"""
        self._index = 0
        self._keys = [key(change) for change in plan.changes]
        self._subscription: Subscription | None = None

    @property
    def done(self) -> bool:
        """Every change made, or the replay diverged: nothing is left to do."""
        return self._index >= len(self._keys) or self.diverged is not None

    def next_key(self) -> Any:
        """The position of the next change to make (None: none left)."""
        return None if self.done else self._keys[self._index]

    def start(self, step: int, *, until: int | None = None) -> None:
        """Check the plan against the registry, listen for changes from outside and journal
        what is replayed (``until``: how far).

        :raises ReplayError: the plan names a knob or value this code does not accept.
        """
        self.plan.check(self.registry)
        self._subscription = self.registry.subscribe(self._notice)
        self.registry.record_event(REPLAY_EVENT, {
            "of": self.plan.source, "changes": len(self.plan.changes), "until": until},
            step=step)

    def advance(self, here: Any, step: int | None = None) -> None:
        """At the safe point ``here`` (comparable with ``key``; ``step``, default ``here``,
        is what the journal records): diverge if someone else changed something, else make
        every change due at or before ``here``."""
        step = here if step is None else step
        if self.noticed and self.diverged is None:
            self._diverge(self.noticed[0], step)
        if self.done:
            return
        changes, keys = self.plan.changes, self._keys
        self.registry.step = step  # journaled with the step they arrive at
        while self._index < len(keys) and keys[self._index] <= here:
            change = changes[self._index]
            self._index += 1
            self._make(change, step, late=keys[self._index - 1] < here)

    def end(self, step: int) -> None:
        """Stop listening; journal what was replayed."""
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        self.registry.record_event(REPLAY_EVENT, {
            "replayed": self.replayed, "of": len(self.plan.changes),
            "late": [c.version for c in self.late],
            "unchanged": [c.version for c in self.unchanged],
            "diverged_at": self.diverged_at}, step=step)

    def _make(self, change: Change, step: int, *, late: bool) -> None:
        source = replay_source(change.version)
        if change.kind == "fire":
            self.registry.fire(change.name, source=source)
        else:
            (event,) = self.registry.set({change.name: change.value}, source=source)
            if event.unchanged:
                self.unchanged.append(change)
        self.replayed += 1
        if late:
            self.late.append(change)
        if self.say is not None:
            self.say(f"livetune: replay: step {step}: {change.kind} {change.name}"
                     + ("" if change.kind == "fire" else f" = {change.value!r}")
                     + f" (original v{change.version}, {change.where()})")

    def _notice(self, event: ChangeEvent) -> None:
        """Subscriber (on the writer's thread, quick): remember changes made by others (not
        the replay's, nor the run's own: a fired ``lr_drop``'s set)."""
        if (event.kind in ("set", "fire") and event.source not in RUN_SOURCES
                and replayed_version(event.source) is None):
            self.noticed.append(event)

    def _diverge(self, event: ChangeEvent, step: int) -> None:
        self.diverged, self.diverged_at = event, step
        self.registry.record_event(REPLAY_EVENT, {
            "diverged": True, "by": event.source, "name": event.name, "version": event.v,
            "replayed": self.replayed, "left": len(self.plan.changes) - self._index},
            step=step)
        if self.say is not None:
            self.say(f"livetune: replay: diverged at step {step}: {event.kind} {event.name} "
                     f"by {event.source}; the original's later changes are not made")


def _read(path: str | os.PathLike[str], warnings: list[str]) -> list[ChangeEvent]:
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        raise ReplayError(f"no journal at {path}: a replay re-applies the journal.jsonl of a "
                          "run directory (livetune train writes one)") from None
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            events.append(parse_line(line))
        except ValueError as exc:
            where = "its last line" if number == len(lines) else f"line {number}"
            warnings.append(f"{path}: {where} is torn or from another livetune version "
                            f"({exc}); read as far as it is whole, that line skipped")
    return events


def _split(events: list[ChangeEvent]) -> list[list[ChangeEvent]]:
    """The journal's records, one list per start (the first start, then each resume)."""
    parts: list[list[ChangeEvent]] = [[]]
    for event in events:
        if event.kind == "start" and any(e.kind == "start" for e in parts[-1]):
            parts.append([])
        parts[-1].append(event)
    return parts


def _resumed_at(start: ChangeEvent, warnings: list[str]) -> tuple[str, int]:
    """The checkpoint and step a resume's ``start`` record names."""
    checkpoint = start.data.get("resumed_from")
    step = start.data.get("resumed_step", start.data.get("num_timesteps", start.step))
    if not isinstance(step, int):
        step = start.step or 0
    if not isinstance(checkpoint, str):
        warnings.append(f"the run was resumed at step {step} (journal v{start.v}) from a "
                        "checkpoint the journal does not name (an earlier livetune): the "
                        "changes before are replayed up to that step")
        checkpoint = f"step_{step}"
    if "settings" not in start.data:
        warnings.append(f"the resume at step {step} (journal v{start.v}) does not record the "
                        "settings it started with (a journal of an earlier livetune): the "
                        "run's config.json, written by its last start, stands in for every "
                        "part, so a budget changed at a resume makes the replay differ")
    if Path(checkpoint).name.startswith("interrupted"):
        warnings.append(f"the run was resumed at step {step} from {checkpoint}, written when "
                        "Ctrl-C stopped it wherever the loop was (between two env steps, or "
                        "inside an update): the replay's checkpoint at that step may not be "
                        "the same state, so the rest may differ")
    return checkpoint, step


def _segments(parts: list[list[ChangeEvent]], source: str, until: int | None,
              warnings: list[str]) -> ReplayPlan:
    """The plan of ``parts[0]`` (cut where the next part resumed from) with the rest as its
    :attr:`~ReplayPlan.resumed`."""
    if len(parts) > 1:
        checkpoint, step = _resumed_at(parts[1][0], warnings)
        if until is None or until > step:
            mine: list[str] = []
            cut = Resume(checkpoint, step, ReplayPlan(())).until
            plan = _plan(parts[0], source, cut, mine, resumed=True)
            rest = _segments(parts[1:], source, until, warnings)
            return dataclasses.replace(
                plan, warnings=(*mine, *rest.warnings),
                resumed=Resume(checkpoint, step, dataclasses.replace(rest, warnings=())))
    return _plan(parts[0], source, until, warnings)


def _plan(events: Iterable[ChangeEvent], source: str, until: int | None,
          warnings: list[str], *, resumed: bool = False) -> ReplayPlan:
    start: ChangeEvent | None = None
    pending: dict[str, list[ChangeEvent]] = {}
    fires: dict[int, ChangeEvent] = {}
    changes: list[Change] = []
    end_step: int | None = None
    made_by_run: set[int] = set()
    for event in events:
        if event.kind == "start":
            start = event
            continue
        if event.kind == "set" and event.source in RUN_SOURCES:
            made_by_run.add(event.v)
        elif event.kind == "set":
            pending.setdefault(event.name, []).append(event)
        elif event.kind == "fire" and not event.data.get("coalesced"):
            fires[event.v] = event
        elif event.kind == "applied":
            if event.step is None or event.applies is None:
                warnings.append(f"v{event.v}: {event.name} was applied with no step or no "
                                "version (a journal of another livetune version?); not "
                                "replayed")
                continue
            if until is not None and _after(event, until):
                end_step = until  # left out, and so are the sets it would have taken
                continue
            if event.applies in made_by_run:
                continue
            changes.extend(_applied(event, pending, fires, warnings))
    if start is None:
        warnings.append(f"{source} has no start record: the values the original started "
                        "with are unknown, so they are not checked")
    unapplied = tuple(Change(s.step or 0, s.name, "set", s.new, s.v)
                      for sets in pending.values() for s in sets)
    if unapplied and end_step is None and not resumed:
        warnings.append(
            f"{len(unapplied)} set(s) were never applied (pending when the original ended: "
            + ", ".join(f"{c.name} v{c.version}" for c in unapplied)
            + "); they changed nothing and are not replayed")
    values = dict(start.data.get("values") or {}) if start is not None else {}
    rest = {k: v for k, v in start.data.items() if k != "values"} if start is not None else {}
    changes.sort(key=lambda c: c.position)  # stable: version order within a safe point
    return ReplayPlan(tuple(changes), values, source, tuple(warnings), unapplied, end_step,
                      rest)


def _after(event: ChangeEvent, until: int) -> bool:
    """Whether an ``applied`` record is past where a replay ``until`` ends: a later step; or,
    in a ``train-vision`` run, the first safe point of an epoch at ``until`` itself, since the
    epoch before ended with a safe point of the same step, where the replay stops."""
    assert event.step is not None
    if event.step != until:
        return event.step > until
    epoch = event.data.get("epoch")
    return isinstance(epoch, int) and epoch > 0 and event.data.get("iteration") == 0


def _applied(event: ChangeEvent, pending: dict[str, list[ChangeEvent]],
             fires: dict[int, ChangeEvent], warnings: list[str]) -> list[Change]:
    """The changes one ``applied`` record put into effect (a fire, or the sets it took)."""
    assert event.step is not None and event.applies is not None
    epoch, iteration = event.data.get("epoch"), event.data.get("iteration")
    where = {"epoch": int(epoch), "iteration": int(iteration or 0)} \
        if isinstance(epoch, int) else {}
    fire = fires.pop(event.applies, None)
    if fire is not None:
        return [Change(event.step, event.name, "fire", None, fire.v, **where)]
    sets = pending.get(event.name, [])
    taken = [s for s in sets if s.v <= event.applies]
    pending[event.name] = [s for s in sets if s.v > event.applies]
    if not taken:
        warnings.append(f"v{event.v}: {event.name} applied version {event.applies}, which the "
                        "journal does not hold (a lost line?); not replayed")
    return [Change(event.step, event.name, "set", s.new, s.v, **where) for s in taken]
