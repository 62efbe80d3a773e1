"""``livetune diff RUN_A RUN_B``: how two ``livetune train`` runs differ.

Two facts: the training settings that differ (``config.json``, leaving out how a run was
served: its name, address, token, pacing) and the first step at which their change
histories diverge (the changes each run applied, compared as step, kind, name and value; the
journal versions differ between runs and are not compared). A fork's history is its
parent's up to the fork point, then its own. A replay that nobody touched has
no divergence from its original; a replay someone changed diverges where they did.

Example::

    >>> from livetune_rl.replay import Change, ReplayPlan
    >>> a = ReplayPlan((Change(512, "lr", "set", 5e-4, 7),
    ...                 Change(900, "evaluate", "fire", None, 9)))
    >>> b = ReplayPlan((Change(512, "lr", "set", 5e-4, 3), Change(700, "lr", "set", 1e-4, 5)))
    >>> where = first_divergence(a, b)
    >>> where.step, where.a.name, where.b.value
    (700, 'evaluate', 0.0001)
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

from .replay import Change, ReplayPlan
from .replay_cli import OriginalRun
from .values import LiveTuneError

SERVING = frozenset({"run_name", "runs_root", "bind", "token", "progress", "serve_process",
                     "max_calls_per_second", "livetune_port"})
"""Settings of how a run was served, not of what it trained: not compared."""


@dataclass(frozen=True)
class Divergence:
    """The first change two runs do not share.

    :param step: the step of the earlier of the two.
    :param a: run A's change there (None: A made no more changes).
    :param b: run B's change there (None: B made no more changes).
    """

    step: int
    a: Change | None
    b: Change | None


def _same(a: Change, b: Change) -> bool:
    return (a.position, a.kind, a.name, a.value) == (b.position, b.kind, b.name, b.value)


def first_divergence(a: ReplayPlan, b: ReplayPlan) -> Divergence | None:
    """Where the changes of ``a`` and ``b`` first differ (None: the same changes)."""
    mine, theirs = a.history(), b.history()
    for left, right in zip(mine, theirs, strict=False):
        if not _same(left, right):
            return Divergence(min(left.step, right.step), left, right)
    if len(mine) == len(theirs):
        return None
    longer = mine if len(mine) > len(theirs) else theirs
    extra = longer[min(len(mine), len(theirs))]
    return Divergence(extra.step, extra if longer is mine else None,
                      extra if longer is theirs else None)


def history(run: OriginalRun) -> ReplayPlan:
    """The changes that made ``run``: for a fork, its parent's (as far as they made the
    checkpoint it started from, :attr:`~livetune_rl.lineage.ForkLineage.parent_until`)
    first, then its own.

    :raises ReplayError: a fork whose parent cannot be read any more.
    """
    if run.fork is None:
        return run.plan
    parent = history(OriginalRun.read(run.fork.fork_of, until=run.fork.parent_until))
    return ReplayPlan((*parent.history(), *run.plan.history()), parent.start_values,
                      run.plan.source)


@dataclass(frozen=True)
class RunDiff:
    """How run B differs from run A.

    :param settings: ``{name: (a, b)}`` of the training settings that differ.
    :param divergence: where their change histories first differ (None: nowhere).
    """

    settings: dict[str, tuple[Any, Any]]
    divergence: Divergence | None

    @classmethod
    def of(cls, a: OriginalRun, b: OriginalRun) -> RunDiff:
        """Compare two runs read with :meth:`OriginalRun.read
        <livetune_rl.replay_cli.OriginalRun.read>`."""
        # threads as the runs ran (OriginalRun.read fills in a vision run's count)
        left, right = dataclasses.asdict(a.config), dataclasses.asdict(b.config)
        names = [*left, *(name for name in right if name not in left)]  # train vs vision
        settings = {name: (left.get(name), right.get(name)) for name in names
                    if name not in SERVING and left.get(name) != right.get(name)}
        return cls(settings, first_divergence(history(a), history(b)))


def _change(change: Change | None) -> str:
    if change is None:
        return "no more changes"
    what = f"fire {change.name}" if change.kind == "fire" else \
        f"set {change.name} = {change.value!r}"
    return f"{what} at {change.where()} (v{change.version})"


def add_parser(sub: Any) -> None:
    """Add ``diff`` to the ``livetune`` subcommands."""
    p = sub.add_parser("diff", help="training settings that differ between two runs, and the "
                                    "first step at which their changes diverge",
                       description="compare two livetune train or train-vision run "
                                   "directories")
    p.add_argument("run_a", metavar="RUN_A", help="a run directory (runs/<name>)")
    p.add_argument("run_b", metavar="RUN_B", help="another run directory")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    try:
        a, b = OriginalRun.read(args.run_a), OriginalRun.read(args.run_b)
    except LiveTuneError as exc:
        raise SystemExit(f"livetune: error: {exc}") from None
    found = RunDiff.of(a, b)
    print(f"A: {a.path}  B: {b.path}")
    if not found.settings:
        print("settings: the same training settings")
    for name, (left, right) in found.settings.items():
        print(f"settings: {name}: {left!r} -> {right!r}")
    where = found.divergence
    if where is None:
        print(f"changes: the same {len(history(a).history())} change(s) at the same steps")
    else:
        print(f"changes: first divergence at step {where.step}: A: {_change(where.a)}; "
              f"B: {_change(where.b)}")
    return 0
