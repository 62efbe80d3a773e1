"""``livetune replay RUN_DIR``: rerun a ``livetune train`` or ``livetune train-vision`` run,
with every change it was given.

The replay trains a new run from the original's ``config.json`` (same algorithm, env, seed,
number and kind of envs, hyperparameters; for a vision run the same model, data, batch size,
schedule and seed) and makes every change of its journal again at the step the original applied
it (:class:`~livetune_rl.sb3.replay.ReplayCallback`; for a vision run at the same epoch and
iteration, :class:`~livetune_rl.vision.replay.VisionReplay`). It writes a
new run directory next to the original (nothing in the original's is ever written) whose
``config.json`` names the original under ``lineage`` and whose journal names, for each set or
fire, the original version it came from. The replay is live like any run: a change you make
while it runs makes it a new branch (docs/replay.md).

Example::

    livetune replay runs/ppo-a                        # -> runs/ppo-a-replay-<time>
    livetune replay runs/ppo-a --run-name ppo-b --until 40000

This module imports neither torch nor SB3 (the parser is built by ``livetune --help``); the
replay itself imports them when it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .flags import add_options, from_args, option
from .lineage import ForkLineage, Lineage
from .options import MAX_CALLS_PER_SECOND
from .replay import Replayer, ReplayError, ReplayPlan
from .tokens import add_token_file
from .train import TrainConfig
from .values import LiveTuneError, Value
from .vision.config import VisionConfig

if TYPE_CHECKING:
    from .registry import Registry

log = logging.getLogger(__name__)

_NOT_SETTINGS = {"token_required", "lineage"}
"""Keys of a ``config.json`` that are not settings (fields of its config class)."""

RunConfig = TrainConfig | VisionConfig
"""The settings of a run directory: ``livetune train``'s or ``livetune train-vision``'s."""


@dataclass(kw_only=True)  # keyword-only: a command's own fields stay positional, first
class ServeSettings:
    """How a run that a command starts from another run's settings is served and shown
    (``livetune replay``, ``livetune fork``): the fields that replace the original's."""

    bind: str | None = option(None, "serve address (default 127.0.0.1:50051)")
    progress: bool = option(True, "no progress bar")
    serve_process: bool = option(True, "serve from a child process, as livetune train does "
                                       "(--no-serve-process: from a thread)", both=True)
    max_calls_per_second: float = option(
        MAX_CALLS_PER_SECOND, "pace the calls of all clients together to N/s (default "
        "%(default)g; 0: no pacing)", metavar="N")
    token: str | None = None  # never written anywhere

    def onto(self, config: RunConfig, **changes: Any) -> RunConfig:
        """``config`` (a ``livetune train`` or ``train-vision`` run's) served as these
        settings say (and with ``changes``)."""
        serve = {"bind": self.bind, "token": self.token, "progress": self.progress,
                 "serve_process": self.serve_process,
                 "max_calls_per_second": self.max_calls_per_second,
                 "livetune_port": None}  # the original's compat port would be taken
        names = {f.name for f in dataclasses.fields(config)}
        return dataclasses.replace(
            config, **{k: v for k, v in serve.items() if k in names}, **changes)


@dataclass
class ReplayConfig(ServeSettings):
    """Arguments of ``livetune replay`` (also usable from Python: ``replay(ReplayConfig(...))``).

    The run's own settings come from the original's ``config.json``; these only say where the
    replay goes, how far, and how it is served.
    """

    run_dir: str = ""  # the positional RUN_DIR
    run_name: str | None = option(None, "name of the replay's run (default: "
                                        "<original>-replay-<time>)")
    runs_root: str | None = option(None, "the replay's run directory goes here (default: next "
                                         "to the original's)")
    until: int | None = option(None, "replay up to the first step (env step; train-vision: "
                                     "iteration) at or after STEP, then write the final "
                                     "checkpoint and end (default: the original's whole "
                                     "budget)", metavar="STEP")


@dataclass(frozen=True)
class OriginalRun:
    """A ``livetune train`` or ``train-vision`` run directory, read for a replay (nothing in
    it is written).

    :param path: the run directory.
    :param config: its settings (``config.json``): a :class:`TrainConfig`, or a
        :class:`~livetune_rl.vision.config.VisionConfig` for a ``train-vision`` run.
    :param plan: the changes of its journal.
    :param warnings: what in ``config.json`` did not match this version of livetune.
    :param fork: where the run was forked from (None: not a fork).
    """

    path: Path
    config: RunConfig
    plan: ReplayPlan
    warnings: tuple[str, ...] = ()
    fork: ForkLineage | None = None

    @property
    def vision(self) -> bool:
        """A ``train-vision`` run (its steps are iterations, placed by epoch too)."""
        return isinstance(self.config, VisionConfig)

    @classmethod
    def read(cls, run_dir: str | Path, *, until: int | None = None) -> OriginalRun:
        """Read ``run_dir/config.json`` and ``run_dir/journal.jsonl``.

        :param run_dir: a directory ``livetune train`` or ``train-vision`` made
            (``runs/<name>``).
        :param until: keep only the changes applied at or before this step.
        :raises ReplayError: not such a directory, or a config this livetune cannot run.
        """
        path = Path(run_dir)
        config_path = path / "config.json"
        try:
            data = json.loads(config_path.read_text())
        except FileNotFoundError:
            raise ReplayError(f"no config.json in {path}: livetune replay reruns a run "
                              "directory made by livetune train or train-vision "
                              "(runs/<name>)") from None
        except ValueError as exc:
            raise ReplayError(f"{config_path} is not JSON ({exc}); it cannot be replayed") \
                from None
        kind: type[TrainConfig] | type[VisionConfig]
        if isinstance(data, dict) and "algo" in data:
            kind = TrainConfig
        elif isinstance(data, dict) and "arch" in data and "dataset" in data:
            kind = VisionConfig
        else:
            raise ReplayError(
                f"{config_path} is not the config of a livetune train run (it names no algo) "
                "nor of a train-vision run (no arch and dataset): replay reruns those, see "
                "docs/replay.md")
        warnings: list[str] = []
        config = _config_of(kind, data, warnings, where=str(config_path))
        plan = ReplayPlan.from_journal(path / "journal.jsonl", until=until)
        if isinstance(config, TrainConfig) and config.threads <= 0:
            warnings.append(f"the run used torch's default thread count (threads "
                            f"{config.threads}); the replay uses this machine's, and with "
                            "another count its numbers differ")
        if kind is VisionConfig and "threads" not in plan.start_data:
            warnings.append(f"{path / 'journal.jsonl'} does not say how many torch threads the "
                            "run used (a journal of an earlier livetune): the replay uses "
                            "torch's default, and with another count its numbers differ")
        return cls(path, _as_run(config, plan), plan, tuple(warnings),
                   ForkLineage.from_data(data.get("lineage")))


def _config_of(kind: type[TrainConfig] | type[VisionConfig], data: Mapping[str, Any],
               warnings: list[str], *, where: str = "the journal's start record") -> RunConfig:
    """``kind`` from saved settings (``config.json``, a start record's ``settings``); what
    does not fit this version of livetune goes into ``warnings``.

    :raises ReplayError: settings ``kind`` refuses.
    """
    fields = {f.name for f in dataclasses.fields(kind)} - {"token"}
    unknown = sorted(set(data) - fields - _NOT_SETTINGS)
    missing = sorted(fields - set(data))
    if unknown:
        warnings.append(f"{where} has settings this livetune does not know, ignored: "
                        f"{', '.join(unknown)} (written by another version?)")
    if missing:
        warnings.append(f"{where} lacks {', '.join(missing)}: this livetune's defaults are "
                        "used (written by another version?)")
    settings = {k: v for k, v in data.items() if k in fields}
    if "reward_bounds" in settings:
        settings["reward_bounds"] = tuple(settings["reward_bounds"])
    try:
        return kind(**settings)
    except TypeError as exc:
        raise ReplayError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did.

    :param model: the trained model.
    :param run_dir: the replay's run directory.
    :param original: the run it replayed.
    :param replayed: changes made again.
    :param late: of those, made after their step (the steps did not meet the original's).
    :param unchanged: sets of a value the variable already held (the start values differ).
    :param diverged_at: the step at which a change from outside made it a new branch.
    :param seconds: wall time of the training.
    :param parent: for a fork, the replay of its parent up to the fork point.
    :param start_mismatches: ``{name: (original, replay)}`` for each value the two runs
        started with that differs (another livetune, SB3 or env version).
    """

    model: Any
    run_dir: Path
    original: OriginalRun
    replayed: int
    late: int
    unchanged: int
    diverged_at: int | None
    seconds: float
    parent: ReplayResult | None = None
    start_mismatches: Mapping[str, tuple[Value, Value]] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        """Every change was made at its own step, and nobody diverged (in the parent's
        replay too, for a fork)."""
        return (self.replayed == len(self.original.plan.history()) and not self.late
                and not self.unchanged and self.diverged_at is None
                and not self.start_mismatches
                and (self.parent is None or self.parent.exact))


def check_env(env_id: str) -> None:
    """Refuse an env id this machine cannot make (not installed, misspelt).

    :raises ReplayError: naming the id and what to install or fix.
    """
    import importlib

    import gymnasium as gym

    if env_id.startswith("livetune/"):
        import livetune_rl.envs  # noqa: F401  (registers the livetune/ ids)
    module, _, name = env_id.rpartition(":")  # gym.make imports "module:Env-v0"'s module too
    try:
        if module:
            importlib.import_module(module)
        gym.spec(name)
    except (ImportError, gym.error.Error) as exc:
        raise ReplayError(f"the run trained on the env {env_id!r}, which this machine cannot "
                          f"make ({exc}): install the package that registers it, then "
                          "replay again") from None


def replay(config: ReplayConfig, original: OriginalRun | None = None, *,
           epochs: int | None = None) -> ReplayResult:
    """Rerun ``config.run_dir`` with every change of its journal, in a new run directory.

    :param config: where the replay goes and how far (:class:`ReplayConfig`).
    :param original: the run, already read (default: read ``config.run_dir``, logging its
        warnings).
    :param epochs: ``train-vision`` only: end after this many epochs (how a fork's parent is
        replayed up to its ``epoch_N.pt``); default the original's.
    :raises ReplayError: a run that cannot be replayed; raised before training starts, and
        the replay's directory is then removed.
    """
    if original is None:
        original = OriginalRun.read(config.run_dir, until=config.until)
        for warning in (*original.warnings, *original.plan.warnings):
            log.warning("livetune: replay: %s", warning)
    check_ranks(original)
    if isinstance(original.config, TrainConfig):
        check_env(original.config.env)
    name = config.run_name or (
        f"{original.path.name}-replay-{time.strftime('%Y%m%d-%H%M%S')}")
    root = Path(config.runs_root) if config.runs_root is not None else original.path.parent
    run_dir = root / name
    owner = _rank() == 0  # under torchrun rank 0 makes the run directory (and cleans it up)
    existed = run_dir.exists()
    lineage = Lineage(str(original.path.resolve()), config.until)
    parent: ReplayResult | None = None
    start: Path | None = None
    if original.fork is not None:  # the parent up to the fork point, then the fork from there
        if existed and owner:
            raise ReplayError(f"the run directory {run_dir} already exists; pick another "
                              "--run-name")
        parent, start = _replay_parent(config, original.fork, name, root, original.vision)
        lineage = dataclasses.replace(lineage, fork=ForkLineage(
            str(parent.run_dir.resolve()), str(start.resolve()), original.fork.step,
            original.fork.values))
    started = time.perf_counter()
    replayers: list[Replayer] = []
    model: Any = None
    segments = original.plan.segments()
    for index, plan in enumerate(segments):
        if index:
            resumed = segments[index - 1].resumed
            assert resumed is not None
            print(f"livetune: replay: resumed at step {resumed.step} from {start}, as the "
                  f"original resumed from {resumed.checkpoint}", flush=True)
        try:
            model, replayer, start = _segment(config, original, plan, name, root, start,
                                              lineage, epochs)
        except ReplayError:  # raised before training starts (the plan or the data refused)
            if index == 0 and owner and not existed and run_dir.is_dir():
                shutil.rmtree(run_dir)  # ours, made by this call: nothing was trained in it
            raise
        replayers.append(replayer)
        if replayer.diverged_at is not None and plan.resumed is not None:
            print("livetune: replay: a new branch: the original's resume is not replayed",
                  flush=True)
            break
    seconds = time.perf_counter() - started
    # both start records are written at the same point of training: after the knobs are
    # registered, before anything is set (by rank 0, the one that journals)
    here = ReplayPlan.from_journal(run_dir / "journal.jsonl").start_values if owner \
        else original.plan.start_values
    diverged = [r.diverged_at for r in replayers if r.diverged_at is not None]
    return ReplayResult(model, run_dir, original, sum(r.replayed for r in replayers),
                        sum(len(r.late) for r in replayers),
                        sum(len(r.unchanged) for r in replayers),
                        diverged[0] if diverged else None, seconds, parent,
                        original.plan.start_mismatches(here))


def _segment(config: ReplayConfig, original: OriginalRun, plan: ReplayPlan, name: str,
             root: Path, start: Path | None, lineage: Lineage,
             epochs: int | None) -> tuple[Any, Replayer, Path | None]:
    """Train one segment of the replay (the run up to its first resume, or from a resume to
    the next): its settings (the journal's ``start`` record's, else ``config.json``'s), from
    ``start`` (a checkpoint: the fork's start or the previous segment's), as far as the
    checkpoint the next resume restarted from. Returns the model, what was replayed and that
    checkpoint (None after the last segment)."""
    from .registry import Registry

    registry = Registry()
    after = plan.resumed
    settings = _settings_of(original, plan)
    resume = None if start is None else str(start)
    run_dir = root / name
    if isinstance(settings, TrainConfig):
        until = after.until if after is not None else config.until
        model, replayer = _train_replay(
            config.onto(settings, run_name=name, runs_root=str(root), resume=resume),
            registry, plan, until, lineage.to_data())
        return model, replayer, None if after is None else run_dir / "checkpoints" / "final"
    tag = None if after is None else Path(after.checkpoint).name
    at_epoch = None if tag is None else _epoch_of(tag)
    if after is None:
        until, epochs = config.until, epochs or settings.epochs
    elif at_epoch is not None:
        until, epochs = None, at_epoch
    else:
        until, epochs = after.step, settings.epochs
    model, replayer = _vision_replay(
        config.onto(settings, run_name=name, runs_root=str(root), resume=resume, epochs=epochs,
                    max_seconds=0.0,  # its stop, if it fired, is in the plan
                    max_steps=_min_steps(settings.max_steps, until)),
        registry, plan, until, lineage.to_data())
    if after is None or tag is None:
        return model, replayer, None
    return model, replayer, _vision_checkpoint(run_dir, tag, after.step)


def _settings_of(original: OriginalRun, plan: ReplayPlan) -> RunConfig:
    """The settings a segment started with: its ``start`` record's, else the run's."""
    data = plan.start_data.get("settings")
    if not isinstance(data, dict):
        return original.config
    try:
        return _as_run(_config_of(type(original.config), data, []), plan)
    except ReplayError:
        return original.config


def _train_replay(settings: TrainConfig, registry: Registry, plan: ReplayPlan, until: int | None,
                  lineage: Mapping[str, Any]) -> tuple[Any, Replayer]:
    """Train ``settings`` (``livetune train``) making ``plan``'s changes again."""
    from .sb3.replay import ReplayCallback
    from .train import train

    callback = ReplayCallback(registry, plan, until=until, verbose=1)
    model = train(settings, registry=registry, callbacks=[callback], lineage=lineage)
    return model, callback.replayer


def _vision_replay(settings: VisionConfig, registry: Registry, plan: ReplayPlan,
                   until: int | None, lineage: Mapping[str, Any]) -> tuple[Any, Replayer]:
    """Train ``settings`` (``livetune train-vision``) making ``plan``'s changes again."""
    from .vision.replay import VisionReplay
    from .vision.train import Trainer

    callback = VisionReplay(registry, plan, until=until, verbose=1)
    try:  # under torchrun rank 0 replays; the others apply what it broadcasts
        trainer = Trainer(settings, registry=registry,
                          callbacks=[callback] if _rank() == 0 else [], lineage=lineage)
    except (FileNotFoundError, ValueError) as exc:  # the data, most often
        raise ReplayError(f"the run cannot be set up again here: {exc}") from None
    trainer.run()
    return trainer.model, callback.replayer


def _as_run(config: RunConfig, plan: ReplayPlan) -> RunConfig:
    """``config`` as the run ran it: a vision run that left the torch thread count to torch
    (``threads`` 0) with the count its journal's ``start`` record holds, since another count
    sums in another order and so changes the numbers (a replay trains with it, ``diff``
    compares it)."""
    recorded = plan.start_data.get("threads")
    if isinstance(config, VisionConfig) and config.threads <= 0 and isinstance(recorded, int) \
            and recorded > 0:
        return dataclasses.replace(config, threads=recorded)
    return config


def _min_steps(max_steps: int, until: int | None) -> int:
    """``--max-steps`` of a vision replay: the original's, or ``until`` if sooner (0: none)."""
    if until is None:
        return max_steps
    return until if not max_steps else min(max_steps, until)


def _rank() -> int:
    """This process's rank under ``torchrun`` (0 otherwise)."""
    return int(os.environ.get("RANK", "0") or 0)


def check_ranks(original: OriginalRun) -> None:
    """Refuse a replay on another number of ranks than the original's: a ``train-vision``
    run trained under ``torchrun`` is replayed under ``torchrun`` with as many ranks (each
    takes the same share of every batch); any other run in one process.

    :raises ReplayError: naming both counts and the command to use.
    """
    world = original.plan.start_data.get("world_size", 1) if original.vision else 1
    world = world if isinstance(world, int) and world > 0 else 1
    here = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world == here:
        return
    if world > 1:
        raise ReplayError(
            f"the run trained on {world} ranks (torchrun): its replay needs as many, each "
            "taking the same share of every batch; run torchrun --standalone "
            f"--nproc-per-node {world} -m livetune_rl.cli replay {original.path} [options]")
    raise ReplayError(f"the run trained in one process and this replay runs on {here} ranks: "
                      "run livetune replay without torchrun")


def _replay_parent(config: ReplayConfig, fork: ForkLineage, name: str, root: Path,
                   vision: bool) -> tuple[ReplayResult, Path]:
    """Replay a fork's parent as far as it made the fork's checkpoint; that replay and its
    checkpoint the fork then starts from.

    ``livetune train``: up to :attr:`ForkLineage.parent_until` (the parent's own ``stop``,
    if it had one, is replayed too); its ``final`` checkpoint. ``train-vision``: an
    ``epoch_N.pt`` was written at the end of epoch N, so the parent is replayed for N epochs
    with the changes up to that step; any other checkpoint was written at the safe point of
    its step, so the parent is replayed up to that step, where its own fired checkpoint (or
    stop) writes the same file, else the ``max_steps_step_N.pt`` of the replay's end.
    """
    if config.until is not None and config.until <= fork.step:
        raise ReplayError(f"--until {config.until} is at or before step {fork.step}, where "
                          f"this run was forked from {fork.fork_of}: replay that run instead")
    settings = dataclasses.replace(config, run_dir=fork.fork_of, run_name=f"{name}-parent",
                                   runs_root=str(root), until=fork.parent_until)
    if not vision:
        parent = replay(settings)
        return parent, parent.run_dir / "checkpoints" / "final"
    tag = Path(fork.checkpoint).name
    epochs = _epoch_of(tag)
    if epochs is not None:
        original = OriginalRun.read(fork.fork_of, until=fork.step)
        parent = replay(dataclasses.replace(settings, until=None), original, epochs=epochs)
    else:
        parent = replay(dataclasses.replace(settings, until=fork.step))
    return parent, _vision_checkpoint(parent.run_dir, tag, fork.step)


def _epoch_of(tag: str) -> int | None:
    """N for a ``train-vision`` ``epoch_N.pt`` (written after epoch N's evaluation and
    schedule step, so a replay up to it trains N epochs); None for any other checkpoint
    (written at the safe point of its step, so a replay up to it stops at that step)."""
    at_epoch = re.fullmatch(r"epoch_(\d+)\.pt", tag)
    return int(at_epoch.group(1)) if at_epoch else None


def _vision_checkpoint(run_dir: Path, tag: str, step: int) -> Path:
    """A vision replay's copy of the original's checkpoint ``tag`` written at ``step``: the
    file of the same name (its own fired checkpoint, stop or epoch end wrote it again), else
    the ``max_steps_step_N.pt`` its end at that step wrote."""
    same = run_dir / "checkpoints" / tag
    return same if same.is_file() else run_dir / "checkpoints" / f"max_steps_step_{step}.pt"


def add_parser(sub: Any) -> None:
    """Add ``replay`` to the ``livetune`` subcommands."""
    p = sub.add_parser("replay", help="rerun a livetune train or train-vision run with "
                                      "every change it was given, at the same steps",
                       description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run to replay (runs/<name>)")
    add_options(p, ReplayConfig)
    add_token_file(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from .tokens import token_from

    config = from_args(ReplayConfig, args, run_dir=args.run_dir,
                       token=token_from(None, args.token_file))
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # under torchrun
        from .vision.train import distributed_cleanup

        with distributed_cleanup():
            return _report(config) if _rank() == 0 else _follow(config)
    return _report(config)


def _follow(config: ReplayConfig) -> int:
    """A rank other than 0 under torchrun: train alongside rank 0, which says what happens."""
    try:
        replay(config)
    except LiveTuneError as exc:
        raise SystemExit(f"livetune: error: {exc}") from None
    return 0


def _report(config: ReplayConfig) -> int:
    """Replay, saying what is made again and how it ended."""
    try:
        original = OriginalRun.read(config.run_dir, until=config.until)
        for warning in (*original.warnings, *original.plan.warnings):
            print(f"livetune: replay: warning: {warning}", flush=True)
        plan = original.plan
        print(f"livetune: replay of {original.path}: {len(plan.history())} change(s) to make "
              "again" + (f", up to step {config.until}" if config.until is not None else ""),
              flush=True)
        result = replay(config, original)
    except LiveTuneError as exc:
        raise SystemExit(f"livetune: error: {exc}") from None
    how = "exact: every change at its own step" if result.exact else (
        f"{result.late} late, {result.unchanged} without effect, "
        f"{len(result.start_mismatches)} start value(s) differing"
        + (f", diverged at step {result.diverged_at}" if result.diverged_at is not None
           else ""))
    if result.parent is not None:
        parent = result.parent
        print(f"livetune: replay: the parent, {parent.original.path}, replayed up to the fork "
              f"point in {parent.run_dir} ({parent.replayed} change(s), "
              f"{'exact' if parent.exact else 'not exact'})", flush=True)
    print(f"livetune: replay: made {result.replayed} of {len(plan.history())} change(s) again "
          f"({how}) in {result.seconds:.1f}s; run directory {result.run_dir}", flush=True)
    return 0
