"""The registry: named live variables and triggers of one process. Pure Python, no network.

This is the paper's "dictionary thread" without the thread: one object owns every
:class:`LiveVariable` and :class:`LiveTrigger` of a process. Writers (the gRPC server thread, or
the program itself) go through :meth:`Registry.set` and :meth:`Registry.fire`, which validate,
journal, then publish under one writer lock. Readers in the training loop never lock:
``var.value`` is a plain attribute that a writer replaces with a new immutable value, and
``registry.version`` is a plain int a loop can compare once per step.

Example::

    >>> import livetune_rl as lt
    >>> reg = lt.Registry()
    >>> lr = lt.LiveVariable("learning_rate", 3e-4, min=1e-7, max=1.0, registry=reg)
    >>> save = lt.LiveTrigger("checkpoint", registry=reg)
    >>> _ = reg.set({"learning_rate": "1e-4"}, source="example")
    >>> lr.value, lr.version
    (0.0001, 1)
    >>> _ = reg.fire("checkpoint")
    >>> save.fired(), save.fired()
    (True, False)
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from .feed import EventFeed, Lagged
from .journal import ChangeEvent, Journal
from .patterns import NameFilter
from .state import RegistryState, TriggerState, VariableState
from .values import (
    Check,
    DuplicateNameError,
    InvalidValueError,
    LiveTuneError,
    Spec,
    UnknownNameError,
    Value,
    VarType,
    VersionConflictError,
    validate_name,
)

log = logging.getLogger(__name__)

Subscriber = Callable[[ChangeEvent], None]


class StepCell(Protocol):
    """Where a registry also publishes its step (a ``ctypes.c_int64`` in shared memory)."""

    value: int


class Committer(Protocol):
    """Where a registry's writes are committed: given a version, journaled, published.

    A registry commits in its own process (:class:`LocalCommitter`, the default) until
    :meth:`Registry.serve_remotely` hands its writes to another process
    (``serve(out_of_process=True)``, see :mod:`livetune_rl.sidecar`): that process is then
    the authority for versions and the journal, and this registry publishes what it answers.
    """

    #: True when the commits happen in another process (which keeps the journal)
    remote: bool

    def commit_set(self, accepted: list[tuple[LiveVariable, Value]],
                   expected: Mapping[str, int], source: str) -> list[ChangeEvent]:
        """Commit validated values (compare-and-set against ``expected``); their events."""
        ...

    def commit_fire(self, trigger: LiveTrigger, source: str) -> ChangeEvent:
        """Commit one fire of ``trigger``; its event."""
        ...

    def record(self, event: ChangeEvent) -> None:
        """Keep a record the training loop made (``applied``, ``event``), already published
        here. Called under the registry's lock: must not block."""
        ...

    def define(self, item: LiveVariable | LiveTrigger) -> None:
        """``item`` joined the registry (called under its lock: must not block)."""
        ...

    def remove(self, name: str) -> None:
        """``name`` left the registry (called under its lock: must not block)."""
        ...


@dataclass(frozen=True)
class Handover:
    """What a registry held when it handed its writes over (:meth:`Registry.serve_remotely`).

    The receiving side mirrors ``items`` and continues from ``version``; ``journal`` is the
    journal the registry was writing (it writes it no more: the other side appends to it).
    """

    items: tuple[LiveVariable | LiveTrigger, ...]
    version: int
    journal: Journal | None


class LocalCommitter:
    """Commits in the registry's own process: its next versions, its journal, then publish.

    The default :class:`Committer` of every :class:`Registry` (part of it: it holds the
    registry's lock while it commits).
    """

    remote = False

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def commit_set(self, accepted: list[tuple[LiveVariable, Value]],
                   expected: Mapping[str, int], source: str) -> list[ChangeEvent]:
        reg = self.registry
        with reg._lock:
            for var, _ in accepted:
                want = expected.get(var.name)
                if want is not None and want != var.version:
                    raise VersionConflictError(
                        f"{var.name}: expected version {want}, but it is at version "
                        f"{var.version}")
            now = time.time()
            answers: list[ChangeEvent] = []
            events: list[ChangeEvent] = []
            changed: list[LiveVariable] = []
            for var, value in accepted:
                if _same_value(var.value, value):
                    # acknowledged, changes nothing: the variable's own version, not journaled
                    answers.append(ChangeEvent(var.version, now, "set", var.name, value, value,
                                               source, reg.step, None, {"unchanged": True}))
                    continue
                event = ChangeEvent(reg.version + len(events) + 1, now, "set", var.name,
                                    var.value, value, source, reg.step)
                events.append(event)
                answers.append(event)
                changed.append(var)
            if events:
                reg._write(events)
                for var, event in zip(changed, events, strict=True):
                    _store_set(var, event)
                reg._publish(events)
        return answers

    def commit_fire(self, trigger: LiveTrigger, source: str) -> ChangeEvent:
        reg = self.registry
        with reg._lock:
            name = trigger.name
            if trigger.max_pending is not None and trigger.pending >= trigger.max_pending:
                # joins the waiting fire(s): journaled, not counted; the action that
                # answers them runs after this fire arrived
                event = ChangeEvent(reg.version + 1, time.time(), "fire", name, None,
                                    trigger.fires, source, reg.step, None, {"coalesced": True})
                reg._write([event])
                trigger.coalesced += 1
                reg._publish([event])
                return event
            event = ChangeEvent(reg.version + 1, time.time(), "fire", name, None,
                                trigger.fires + 1, source, reg.step)
            reg._write([event])
            _store_fire(trigger, event)
            reg._publish([event])
        return event

    def record(self, event: ChangeEvent) -> None:
        self.registry._write_from_training([event])

    def define(self, item: LiveVariable | LiveTrigger) -> None:
        pass  # nothing to tell: this registry is the authority

    def remove(self, name: str) -> None:
        pass


class LiveVariable:
    """A typed, named, bounded value that can be changed while the program runs.

    Read it with ``var.value``: a plain attribute load, safe from any thread without a lock.
    Change it remotely (``livetune set NAME VALUE``) or locally with :meth:`set`.

    Args:
        name: dotted identifier, unique in its registry (``"reward.hungry"``).
        default: initial value; its type (float, int, bool or str) is the variable's type.
        min, max: inclusive bounds (float and int only).
        choices: the only values allowed.
        help: one line shown by ``livetune ls``.
        check: extra rule, ``value -> None`` if fine else the reason it is refused.
        deferred: the training loop applies this knob at a safe point and reports it with
            :meth:`mark_applied`; until then ``livetune ls`` shows it as pending.
        registry: the registry to join (default: the process-wide one).

    Example::

        >>> hungry = LiveVariable("reward.hungry", -1.0, min=-10, max=10, registry=Registry())
        >>> hungry.value
        -1.0
    """

    def __init__(
        self,
        name: str,
        default: Value,
        *,
        min: float | int | None = None,
        max: float | int | None = None,
        choices: Sequence[Value] | None = None,
        help: str = "",
        check: Check | None = None,
        deferred: bool = False,
        registry: Registry | None = None,
    ) -> None:
        self.name = validate_name(name)
        self.spec = Spec.for_default(default, min=min, max=max, choices=choices, check=check,
                                     name=name)
        self.default: Value = self.spec.accept(name, default)
        self.help = help
        self.deferred = deferred
        # Published state: replaced (never mutated) by the registry under its writer lock.
        self.value: Value = self.default
        self.version = 0
        self.changed_at = time.time()
        self.source = "default"
        self.step: int | None = None
        self.applied_version = 0
        self.applied_step: int | None = None
        self._seen_version = 0
        self.registry = registry if registry is not None else default_registry()
        self.registry._register(self)

    @property
    def type(self) -> VarType:
        return self.spec.type

    @property
    def pending(self) -> bool:
        """True while a deferred knob has a set the training loop has not applied yet."""
        return self.deferred and self.applied_version < self.version

    def changed_since(self, version: int) -> bool:
        """True if the variable was set after ``version`` (compare with :attr:`version`)."""
        return self.version > version

    def changed(self) -> bool:
        """True once after each change seen by this reader (single-reader convenience)."""
        if self.version != self._seen_version:
            self._seen_version = self.version
            return True
        return False

    def set(self, value: object, *, source: str = "local") -> ChangeEvent:
        """Validate, journal and publish a new value (same path as a remote set)."""
        return self.registry.set({self.name: value}, source=source)[0]

    def mark_applied(self, *, step: int | None = None, version: int | None = None,
                     **data: Any) -> ChangeEvent | None:
        """Record that the training loop applied the value (see Registry.mark_applied)."""
        return self.registry.mark_applied(self.name, step=step, version=version,
                                          data=data or None)

    def state(self) -> VariableState:
        """An immutable copy of this variable (read it under the registry's lock to get a
        consistent one; :meth:`Registry.state` does)."""
        spec = self.spec
        return VariableState(
            name=self.name, type=spec.type, default=self.default, min=spec.min, max=spec.max,
            choices=spec.choices, help=self.help, deferred=self.deferred,
            **{field: getattr(self, field) for field in VariableState.PUBLISHED})

    def __repr__(self) -> str:
        return f"LiveVariable({self.name!r}, value={self.value!r}, version={self.version})"


class LiveTrigger:
    """A one-shot flag: :meth:`fired` is True once for every counted fire.

    No fire is lost, and fires do not pile up: a fire that arrives while ``max_pending``
    fires are already waiting for the training loop (not yet consumed by :meth:`fired`)
    *joins* them instead of being counted. It is journaled (``data: {"coalesced": true}``)
    and counted in :attr:`coalesced`, and the action it asks for still runs after it
    arrived, once, for the fire it joined. With the default ``max_pending=1``, 200 fires
    of ``evaluate`` made while one evaluation is waiting run one evaluation, not 200.

    Args:
        name: dotted identifier, unique in its registry.
        help: one line shown by ``livetune ls``.
        max_pending: fires that may wait at once (None: no limit, every fire counted).
        registry: the registry to join (default: the process-wide one).

    Example::

        >>> reg = Registry()
        >>> stop = LiveTrigger("stop", help="end training gracefully", registry=reg)
        >>> _ = reg.fire("stop"); joined = reg.fire("stop")
        >>> joined.data, stop.coalesced
        ({'coalesced': True}, 1)
        >>> stop.pending, stop.fired(), stop.fired()
        (1, True, False)
    """

    def __init__(self, name: str, help: str = "", *, max_pending: int | None = 1,
                 registry: Registry | None = None) -> None:
        self.name = validate_name(name)
        self.help = help
        if max_pending is not None and max_pending < 1:
            raise InvalidValueError(f"{name}: max_pending must be at least 1 (None: no "
                                    f"limit), got {max_pending!r}")
        self.max_pending = max_pending
        self.fires = 0  # written by the registry under its lock
        self.coalesced = 0  # fires that joined waiting ones, written under the lock
        self.handled = 0  # written by the reader only
        self.version = 0
        self.last_fired: float | None = None
        self.source = ""
        self.registry = registry if registry is not None else default_registry()
        self.registry._register(self)

    @property
    def pending(self) -> int:
        """Fires not yet consumed by :meth:`fired`."""
        return self.fires - self.handled

    def fired(self, *, step: int | None = None,
              data: Mapping[str, Any] | None = None) -> bool:
        """Consume one fire: True once per fire. Journals an ``applied`` record when True
        (with ``data``, e.g. where in the loop it was handled)."""
        if self.handled >= self.fires:
            return False
        self.handled += 1
        self.registry._record_handled(self, step, data)
        return True

    def state(self) -> TriggerState:
        """An immutable copy of this trigger's state."""
        return TriggerState(name=self.name, help=self.help, max_pending=self.max_pending,
                            **{field: getattr(self, field) for field in TriggerState.PUBLISHED})

    def __repr__(self) -> str:
        return f"LiveTrigger({self.name!r}, fires={self.fires}, pending={self.pending})"


class WatcherLagged(LiveTuneError):
    """A :class:`Watcher` fell more than ``maxsize`` events behind; take a new snapshot."""


class Subscription:
    """Handle returned by :meth:`Registry.subscribe`; ``close()`` unsubscribes."""

    def __init__(self, registry: Registry, callback: Subscriber,
                 snapshot: RegistryState | None) -> None:
        self._registry = registry
        self.callback = callback
        self.snapshot = snapshot

    def close(self) -> None:
        self._registry._unsubscribe(self.callback)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Watcher:
    """Iterator over change events with a bounded buffer (see :meth:`Registry.watch`).

    If the consumer falls ``maxsize`` events behind, iteration raises :class:`WatcherLagged`
    (once the events kept for it are read) instead of silently skipping events.
    """

    def __init__(self, registry: Registry, maxsize: int) -> None:
        self._feed: EventFeed[ChangeEvent] = EventFeed(maxsize)
        self._closed = False
        self._sub = registry.subscribe(self._feed.push, snapshot=True)
        self.snapshot = self._sub.snapshot

    @property
    def lagged(self) -> bool:
        """True once events were dropped for this watcher."""
        return self._feed.dropped > 0

    def get(self, timeout: float | None = None) -> ChangeEvent | None:
        """Next event, or None after ``timeout`` seconds or once closed."""
        item = self._feed.get(timeout)
        if isinstance(item, Lagged):
            raise WatcherLagged("watcher fell behind; events were dropped: watch again")
        return item

    def __iter__(self) -> Iterator[ChangeEvent]:
        while not self._closed:
            event = self.get()
            if event is None:
                return
            yield event

    def close(self) -> None:
        self._closed = True
        self._sub.close()
        self._feed.close()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Registry:
    """All live variables and triggers of a process, their versions, journal and subscribers.

    Most programs use the process-wide registry (:func:`default_registry`), which
    ``LiveVariable(...)`` joins by default; tests and libraries can create their own.

    Attributes read without a lock by the training loop:
        version: increases by one with every journal record (set, fire, applied, event).
            Served from another process (``serve(out_of_process=True)``) it still increases
            with every change seen here, and each variable carries the serving process's
            version of its last set, but the journal's numbering is the serving process's.
        step: the training step last reported by the loop (``registry.step = n``); stamped on
            every record so the journal says at which step a change arrived or was applied.
    """

    def __init__(self, *, journal: Journal | str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.RLock()
        self._notifying = False
        self._vars: dict[str, LiveVariable] = {}
        self._triggers: dict[str, LiveTrigger] = {}
        self._subscribers: list[Subscriber] = []
        self.version = 0
        self._step: int | None = None
        self._step_cell: StepCell | None = None
        self._committer: Committer = LocalCommitter(self)
        self.journal: Journal | None = None
        self._journal_failed = False
        if journal is not None:
            self.attach_journal(journal)

    @property
    def step(self) -> int | None:
        """The training step last reported by the loop (``registry.step = n``)."""
        return self._step

    @step.setter
    def step(self, value: int | None) -> None:
        self._step = value
        cell = self._step_cell
        if cell is not None:  # served from another process: it stamps sets with this step
            cell.value = -1 if value is None else value

    # ----------------------------------------------------------------- membership
    def _register(self, item: LiveVariable | LiveTrigger) -> None:
        with self._lock:
            if item.name in self._vars or item.name in self._triggers:
                raise DuplicateNameError(
                    f"{item.name!r} is already registered in this registry; names must be "
                    "unique (use Registry.remove first to replace it)"
                )
            if isinstance(item, LiveVariable):
                self._vars[item.name] = item
            else:
                self._triggers[item.name] = item
            self._committer.define(item)

    def remove(self, name: str) -> None:
        """Forget a variable or trigger (its journal records stay)."""
        with self._lock:
            if self._vars.pop(name, None) is None and self._triggers.pop(name, None) is None:
                raise UnknownNameError(name, self.names())
            self._committer.remove(name)

    def names(self) -> list[str]:
        return sorted([*self._vars, *self._triggers])

    def __contains__(self, name: object) -> bool:
        return name in self._vars or name in self._triggers

    def variable(self, name: str) -> LiveVariable:
        """The variable called ``name``; :class:`UnknownNameError` with suggestions if none."""
        try:
            return self._vars[name]
        except KeyError:
            what = "variable" if name not in self._triggers else "variable (it is a trigger)"
            raise UnknownNameError(name, self._vars, what) from None

    def trigger(self, name: str) -> LiveTrigger:
        try:
            return self._triggers[name]
        except KeyError:
            what = "trigger" if name not in self._vars else "trigger (it is a variable)"
            raise UnknownNameError(name, self._triggers, what) from None

    def variables(self) -> list[LiveVariable]:
        return [self._vars[n] for n in sorted(self._vars)]

    def triggers(self) -> list[LiveTrigger]:
        return [self._triggers[n] for n in sorted(self._triggers)]

    # ----------------------------------------------------------------- writes
    def set(
        self,
        changes: Mapping[str, object] | Iterable[tuple[str, object]],
        *,
        expected: Mapping[str, int] | None = None,
        source: str = "local",
    ) -> list[ChangeEvent]:
        """Validate, journal and publish one or several new values, atomically.

        Either every change is accepted (journaled, flushed, then published, in that order)
        or none is: a bad value raises :class:`InvalidValueError`, an unknown name
        :class:`UnknownNameError`, a version mismatch :class:`VersionConflictError`, a journal
        write failure ``OSError``, and nothing changes.

        A value equal to the one the variable holds (same type) is acknowledged but changes
        nothing: its answer keeps the variable's version, has ``old == new`` and
        ``data == {"unchanged": True}``, and it is neither journaled nor published (the
        training loop sees nothing to apply). Returns one event per change, in order.

        Args:
            changes: ``{name: value}``; values may be Python values or text ("1e-4").
            expected: optional ``{name: version}`` for compare-and-set.
            source: who asked (a peer address, "local", ...), journaled.
        """
        items = list(changes.items() if isinstance(changes, Mapping) else changes)
        if not items:
            raise InvalidValueError("nothing to set")
        with self._lock:
            self._check_writable()
            accepted: list[tuple[LiveVariable, Value]] = []
            for name, raw in items:
                var = self.variable(name)
                if any(var is seen for seen, _ in accepted):
                    raise InvalidValueError(f"{name}: set twice in one request")
                accepted.append((var, var.spec.accept(name, raw)))
            committer = self._committer
        # committed outside the lock: a remote committer waits for the other process, whose
        # answers this registry publishes under it (the local one takes it again)
        return committer.commit_set(accepted, expected or {}, source)

    def fire(self, name: str, *, source: str = "local") -> ChangeEvent:
        """Fire a trigger: journaled, then counted, so the training loop sees it once; or,
        when the trigger already has ``max_pending`` fires waiting, joined to them (the
        event's ``data`` is ``{"coalesced": True}``; see :class:`LiveTrigger`)."""
        with self._lock:
            self._check_writable()
            trig = self.trigger(name)
            committer = self._committer
        return committer.commit_fire(trig, source)

    def mark_applied(
        self,
        name: str,
        *,
        step: int | None = None,
        version: int | None = None,
        value: Value | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> ChangeEvent | None:
        """Record that the training loop applied variable ``name`` at its safe point.

        Journals an ``applied`` record carrying the version of the set it applies and the
        training step; returns None (and writes nothing) if that version was already applied.

        Args:
            version: the version the loop read *before* reading the value it applied (default:
                the current one). Reading version first, then value, means a set racing with
                the apply is applied again at the next safe point, never lost.
            value: the value really in effect, when it differs from ``var.value``.
        """
        with self._lock:
            self._check_writable()
            var = self.variable(name)
            version = var.version if version is None else min(int(version), var.version)
            if var.applied_version >= version:
                return None
            step = self.step if step is None else step
            event = ChangeEvent(self.version + 1, time.time(), "applied", name, None,
                                var.value if value is None else value, "training", step,
                                version, _jsonable(data or {}))
            self._record(event)
            var.applied_version = version
            var.applied_step = step
            self._publish([event])
        return event

    def record_event(
        self, name: str, data: Mapping[str, Any], *, step: int | None = None,
        source: str = "training",
    ) -> ChangeEvent:
        """Journal and stream something the training loop reports (``evaluate`` results...)."""
        validate_name(name)
        with self._lock:
            self._check_writable()
            event = ChangeEvent(self.version + 1, time.time(), "event", name, None, None,
                                source, self.step if step is None else step, None,
                                _jsonable(data))
            self._record(event)
            self._publish([event])
        return event

    def _record_handled(self, trig: LiveTrigger, step: int | None,
                        data: Mapping[str, Any] | None = None) -> None:
        with self._lock:
            step = self.step if step is None else step
            event = ChangeEvent(self.version + 1, time.time(), "applied", trig.name, None,
                                trig.handled, "training", step, trig.version,
                                _jsonable(data or {}))
            self._record(event)
            self._publish([event])

    def _check_writable(self) -> None:
        if self._notifying:
            raise LiveTuneError(
                "a subscriber callback cannot change the registry; use watch() and act outside"
            )

    def _record(self, event: ChangeEvent) -> None:
        """Keep a record of the training loop: journaled here, or handed to the serving
        process (which gives it its own version there) when served from another process."""
        self._committer.record(event)

    # ----------------------------------------------------------------- served elsewhere
    @property
    def remote(self) -> bool:
        """True while another process commits this registry's writes (and journals them)."""
        return self._committer.remote

    def serve_remotely(self, committer: Committer, *, step_cell: StepCell | None = None,
                       announce: Callable[[Handover], None] | None = None) -> Handover:
        """Hand this registry's writes to ``committer`` (another process commits them).

        From now on sets and fires go to ``committer``, which answers with the committed
        events (this registry publishes them), records of the training loop are handed to
        it, and the journal is no longer written here. ``announce`` is called with what the
        registry holds before any of that reaches ``committer``, atomically with the switch:
        no definition made meanwhile is missed or sent twice. ``step_cell`` also gets every
        ``registry.step`` (the other process stamps sets with it).

        :param committer: the other process's end of the link.
        :param step_cell: shared memory the training step is also written to.
        :param announce: told the :class:`Handover` first (the link sends it on).
        :raises LiveTuneError: when the registry is already served from another process.
        """
        with self._lock:
            if self._committer.remote:
                raise LiveTuneError("this registry is already served from another process")
            handover = Handover((*self.variables(), *self.triggers()), self.version,
                                self.journal)
            if announce is not None:
                announce(handover)
            self.journal = None  # the other process appends to it from now on
            self._committer = committer
            self._step_cell = step_cell
            if step_cell is not None:
                step_cell.value = -1 if self._step is None else self._step
        return handover

    def commit_locally(self, committer: Committer, *, journal: Journal | None = None) -> None:
        """Take the writes back from ``committer`` (no-op if it no longer has them):
        versions are this registry's again, and so is ``journal`` when given (the one
        :meth:`serve_remotely` handed over, if the other process never took it up)."""
        with self._lock:
            if self._committer is committer:
                self._committer = LocalCommitter(self)
                self._step_cell = None
            if journal is not None and self.journal is None and not self._committer.remote:
                self.journal = journal

    def apply_committed(self, events: Iterable[ChangeEvent]) -> list[ChangeEvent]:
        """Publish sets and fires committed by the serving process (out-of-process serving).

        Each variable keeps the version the serving process gave it, so ``applied`` records
        name the right set; an event older than what a variable holds is skipped (a newer
        one overtook it). ``registry.version`` always moves forward, so a training loop
        comparing it sees the change. Local subscribers get the events published here.
        Returns ``events``.
        """
        events = list(events)
        with self._lock:
            published: list[ChangeEvent] = []
            for event in events:
                if event.kind == "set":
                    var = self._vars.get(event.name)
                    if var is None or event.v <= var.version:
                        continue
                    _store_set(var, event)
                elif event.kind == "fire":
                    trig = self._triggers.get(event.name)
                    if trig is None or not isinstance(event.new, int) \
                            or event.new <= trig.fires:
                        continue
                    _store_fire(trig, event)
                else:
                    continue
                published.append(event)
            if published:
                self.version = max(self.version + 1, max(e.v for e in published))
                self._notify(published)
        return events

    def define_from(self, state: VariableState | TriggerState, *,
                    check: Check | None = None) -> LiveVariable | LiveTrigger:
        """Create the variable or trigger ``state`` describes, with its published state
        (replacing one of that name): how a serving process mirrors the training process.

        :param state: the record to restore (from :meth:`LiveVariable.state` or
            :meth:`LiveTrigger.state`).
        :param check: the variable's custom check (a record cannot carry one).

        Example::

            >>> reg = Registry(); lr = LiveVariable("lr", 0.1, registry=reg)
            >>> _ = reg.set({"lr": 0.2})
            >>> mirror = Registry().define_from(lr.state())
            >>> mirror.value, mirror.version
            (0.2, 1)
        """
        with self._lock:
            if state.name in self:
                self.remove(state.name)
            item: LiveVariable | LiveTrigger
            if isinstance(state, VariableState):
                item = LiveVariable(state.name, state.default, min=state.min, max=state.max,
                                    choices=state.choices or None, help=state.help,
                                    check=check, deferred=state.deferred, registry=self)
                fields = VariableState.PUBLISHED
            else:
                item = LiveTrigger(state.name, state.help, max_pending=state.max_pending,
                                   registry=self)
                fields = TriggerState.PUBLISHED
            for field in fields:
                setattr(item, field, getattr(state, field))
        return item

    def adopt_record(self, event: ChangeEvent) -> ChangeEvent:
        """Journal and stream, under this registry's next version, a record the training
        loop made in another process (``applied``, ``event``); the record as kept here."""
        with self._lock:
            if event.kind == "applied":
                var = self._vars.get(event.name)
                if var is not None and event.applies is not None:
                    var.applied_version = max(var.applied_version, event.applies)
                    var.applied_step = event.step
                trig = self._triggers.get(event.name)
                if trig is not None and isinstance(event.new, int):
                    trig.handled = max(trig.handled, event.new)
            record = replace(event, v=self.version + 1)
            self._write_from_training([record])
            self._publish([record])
        return record

    def _write(self, events: list[ChangeEvent]) -> None:
        if self.journal is not None:
            self.journal.append(events)

    def _write_from_training(self, events: list[ChangeEvent]) -> None:
        """Journal records the training loop makes (applied, event): a failing journal is
        logged, never raised into the training loop; the change itself still happened."""
        try:
            self._write(events)
        except OSError as exc:
            if not self._journal_failed:
                log.error("livetune: cannot write the journal (%s); training goes on, "
                          "records are kept in memory only until it works again", exc)
            self._journal_failed = True
        else:
            self._journal_failed = False

    def _publish(self, events: list[ChangeEvent]) -> None:
        self.version = events[-1].v
        self._notify(events)

    def _notify(self, events: list[ChangeEvent]) -> None:
        self._notifying = True
        try:
            for event in events:
                for callback in list(self._subscribers):
                    try:
                        callback(event)
                    except Exception:  # a broken subscriber must not break a set
                        log.exception("subscriber failed; removed")
                        self._unsubscribe(callback)
        finally:
            self._notifying = False

    # ----------------------------------------------------------------- journal
    def attach_journal(
        self, journal: Journal | str | os.PathLike[str], *, data: Mapping[str, Any] | None = None
    ) -> Journal:
        """Start journaling to ``journal`` (a path or :class:`Journal`) with a ``start`` record
        holding the values in effect, so the journal alone tells the whole history."""
        with self._lock:
            if self._committer.remote:
                raise LiveTuneError("this registry is served from another process, which "
                                    "keeps the journal")
            if not isinstance(journal, Journal):
                journal = Journal(Path(journal))
            if self.journal is not None and self.journal is not journal:
                self.journal.close()
            self.journal = journal
            record = {"values": self.state().values(), "pid": os.getpid(), **(data or {})}
            event = ChangeEvent(self.version + 1, time.time(), "start", "", None, None, "local",
                                self.step, None, record)
            self._write([event])
            self._publish([event])
        return journal

    def continue_versions(self, version: int) -> None:
        """Continue the version sequence of an earlier run (resume): next record is version+1."""
        with self._lock:
            self.version = max(self.version, int(version))

    # ----------------------------------------------------------------- reads
    def state(self, patterns: Sequence[str] | NameFilter = ()) -> RegistryState:
        """A consistent snapshot of every variable and trigger (optionally glob-filtered)."""
        wanted = patterns if isinstance(patterns, NameFilter) else NameFilter(patterns)

        with self._lock:
            variables = tuple(v.state() for v in self.variables() if wanted(v.name))
            triggers = tuple(t.state() for t in self.triggers() if wanted(t.name))
            return RegistryState(self.version, self.step, variables, triggers)

    def values(self) -> dict[str, Value]:
        """``{name: value}`` of every variable."""
        return {v.name: v.value for v in self.variables()}

    # ----------------------------------------------------------------- subscribers
    def subscribe(self, callback: Subscriber, *, snapshot: bool = False) -> Subscription:
        """Call ``callback(event)`` for every future change, in version order.

        Callbacks run on the writer's thread while it holds the writer lock: keep them quick
        and never change the registry from one (hand events to a queue instead, as
        :meth:`watch` does). With ``snapshot=True`` the subscription carries a
        :class:`RegistryState` taken atomically with subscribing: no gap, no duplicate.
        """
        with self._lock:
            self._subscribers.append(callback)
            snap = self.state() if snapshot else None
        return Subscription(self, callback, snap)

    def _unsubscribe(self, callback: Subscriber) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def watch(self, maxsize: int = 1024) -> Watcher:
        """A blocking iterator of change events (``watcher.snapshot`` holds the state before).

        Example::

            >>> reg = Registry(); x = LiveVariable("x", 1, registry=reg)
            >>> with reg.watch() as w:
            ...     _ = reg.set({"x": 2})
            ...     w.get(timeout=1).new
            2
        """
        return Watcher(self, maxsize)


def _same_value(current: Value, new: Value) -> bool:
    """Whether a set of ``new`` leaves a variable holding ``current`` as it is (same type:
    ``True`` is not ``1``)."""
    return type(current) is type(new) and current == new


def _store_set(var: LiveVariable, event: ChangeEvent) -> None:
    """Publish a committed set on its variable: one attribute store per published field,
    the value first (callers hold the registry's lock and store its version after)."""
    var.value = event.new
    var.version = event.v
    var.changed_at = event.t
    var.source = event.source
    var.step = event.step


def _store_fire(trig: LiveTrigger, event: ChangeEvent) -> None:
    """Count a committed fire on its trigger (``event.new`` is its fire number)."""
    trig.fires = event.new  # type: ignore[assignment]
    trig.version = event.v
    trig.last_fired = event.t
    trig.source = event.source


def _jsonable(data: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of ``data`` (numpy scalars become numbers, NaN becomes None)."""

    def fix(obj: Any) -> Any:
        if isinstance(obj, Mapping):
            return {str(k): fix(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [fix(v) for v in obj]
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else None
        if obj is None or isinstance(obj, (bool, int, str)):
            return obj
        if hasattr(obj, "item"):  # numpy / torch scalars
            return fix(obj.item())
        return str(obj)

    return fix(data)


_default_lock = threading.Lock()
_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry that ``LiveVariable`` and ``serve`` use by default."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Registry()
        return _default
