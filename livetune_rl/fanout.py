"""One call to many runs: the runs whose names match a glob, called side by side.

``livetune set --run 'seed-*' learning_rate=1e-4`` sets the value in every live run of this
user whose name matches ``seed-*``. Each run gets one call of its own, so a set is atomic
within each run (all its assignments or none) but not across runs: one run may refuse what
another accepts, and each answer is reported with its run. Up to eight calls are in flight
at once (threads), so the runs are called side by side rather than one after another.

Example::

    >>> is_pattern("seed-*"), is_pattern("seed-3")
    (True, False)
    >>> from livetune_rl.discovery import RunRecord
    >>> runs = [RunRecord("seed-1", "127.0.0.1:1", 1, 0.0),
    ...         RunRecord("seed-2", "127.0.0.1:2", 2, 0.0),
    ...         RunRecord("other", "127.0.0.1:3", 3, 0.0)]
    >>> [r.run for r in matching_runs("seed-*", runs)]
    ['seed-1', 'seed-2']
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from .discovery import RunNotFoundError, RunRecord
from .values import LiveTuneError

T = TypeVar("T")

GLOB_CHARACTERS = frozenset("*?[")
MAX_THREADS = 8  # calls in flight at once: enough for a sweep, few enough for any server


def is_pattern(run: str) -> bool:
    """Whether ``run`` is a glob (``*``, ``?`` or ``[...]``) rather than one run's name."""
    return any(c in GLOB_CHARACTERS for c in run)


def matching_runs(pattern: str, runs: Sequence[RunRecord]) -> list[RunRecord]:
    """The runs whose names match ``pattern`` (``fnmatch`` rules, case-sensitive), in the
    order given; :class:`RunNotFoundError` naming the live runs if none does."""
    found = [r for r in runs if fnmatch.fnmatchcase(r.run, pattern)]
    if not found:
        known = ", ".join(sorted({r.run for r in runs})) or "none"
        raise RunNotFoundError(f"no live run matches {pattern!r} (live runs: {known})")
    return found


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one run answered: ``result`` when the call succeeded, else ``error``.

    :param run: the run's name.
    :param address: where it was reached.
    :param result: what the call returned (None when it failed).
    :param error: the refusal or failure, as the server or client worded it.
    :param code: the gRPC status name of a refusal (``INVALID_ARGUMENT``), if it had one.
    """

    run: str
    address: str
    result: T | None = None
    error: str | None = None
    code: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def fan_out(runs: Sequence[RunRecord], call: Callable[[RunRecord], T]) -> list[Outcome[T]]:
    """``call(run)`` for each run, a few at a time; one :class:`Outcome` per run, in the
    order of ``runs``. A :class:`LiveTuneError` (a refusal, an unreachable run) becomes
    that run's error; any other exception is a bug and propagates.

    >>> outcomes = fan_out([RunRecord("a", "x:1", 1, 0.0)], lambda r: r.run.upper())
    >>> outcomes[0].result, outcomes[0].ok
    ('A', True)
    """

    def one(run: RunRecord) -> Outcome[T]:
        try:
            return Outcome(run.run, run.address, result=call(run))
        except LiveTuneError as exc:
            code = getattr(exc, "code", None)
            return Outcome(run.run, run.address, error=str(exc),
                           code=getattr(code, "name", None))

    if len(runs) == 1:
        return [one(runs[0])]
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(runs))) as pool:
        return list(pool.map(one, runs))
