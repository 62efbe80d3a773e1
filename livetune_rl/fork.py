"""``livetune fork RUN_DIR --from CHECKPOINT``: a new run from a checkpoint of an old one.

The fork trains with the parent's settings from the parent's checkpoint (model, replay
buffer, the live values in effect there; for a ``train-vision`` run the model, optimizer,
schedule, position and live values of a ``checkpoints/<tag>.pt``), in a new run directory
next to the parent's; each
``--set NAME=VALUE`` is set when training starts, journaled with the source ``fork``, and
applied at its usual safe point. The fork's ``config.json`` names its parent, the checkpoint
and its step under ``lineage``; nothing in the parent's directory is written. Replaying a fork
(``livetune replay``) replays its parent up to the fork's step first, then the fork.

Example::

    livetune fork runs/ppo-a --from runs/ppo-a/checkpoints/step_40960 --set learning_rate=1e-4
    livetune fork runs/ppo-a --from final --set reward.scale=2 --run-name ppo-a-scale2
    livetune fork runs/vgg --from epoch_3 --set learning_rate=0.01 --epochs 8
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .flags import add_options, from_args, option
from .lineage import ForkLineage, Lineage
from .replay import ReplayError
from .replay_cli import OriginalRun, ServeSettings, check_env
from .tokens import add_token_file
from .values import LiveTuneError

FORK_SOURCE = "fork"
"""The source the fork's ``--set`` values are journaled with."""


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


@dataclass
class ForkConfig(ServeSettings):
    """Arguments of ``livetune fork`` (also from Python: ``fork(ForkConfig(...))``)."""

    run_dir: str = ""  # the positional RUN_DIR
    checkpoint: str = ""  # --from
    values: dict[str, str] = option(
        help="a value to start the fork with (repeatable), e.g. --set learning_rate=1e-4",
        factory=dict, parse=_assignment, repeat=True, metavar="NAME=VALUE", names=("--set",))
    run_name: str | None = option(None, "name of the fork's run (default: "
                                        "<parent>-fork-<time>)")
    timesteps: int | None = option(None, "the fork's budget, counted from the parent's start "
                                         "(default: the parent's)")
    epochs: int | None = option(None, "train-vision: the fork's epochs, counted from the "
                                      "parent's start (default: the parent's)")


def find_checkpoint(parent: Path, given: str) -> Path:
    """``given`` as a checkpoint directory of ``parent``: a path, or a tag under
    ``parent/checkpoints``.

    :raises ReplayError: no such checkpoint, or one of another run.
    """
    path = Path(given)
    if not path.exists():
        path = parent / "checkpoints" / given
    if not (path / "model.zip").is_file() or not (path / "live_values.json").is_file():
        tags = sorted(p.name for p in (parent / "checkpoints").glob("*") if p.is_dir())
        raise ReplayError(f"{given} is not a checkpoint of {parent} (expected model.zip and "
                          f"live_values.json in it); its checkpoints: {', '.join(tags) or 'none'}")
    if path.resolve().parent.parent != parent.resolve():
        raise ReplayError(f"{path} is a checkpoint of another run than {parent}: fork the run "
                          "it belongs to")
    return path


def fork(config: ForkConfig) -> tuple[Any, Path]:
    """Start a run from a checkpoint of ``config.run_dir`` with ``config.values``; returns
    the trained model and the fork's run directory.

    :raises ReplayError: not a run or not one of its checkpoints, a name or value the run
        refuses (raised before training; the fork's directory is then removed).
    """
    parent = OriginalRun.read(config.run_dir)
    if parent.vision:
        return _fork_vision(config, parent)
    if config.epochs is not None:
        raise ReplayError(f"--epochs is the budget of a train-vision fork; {parent.path} is a "
                          "livetune train run: give its budget with --timesteps")
    checkpoint = find_checkpoint(parent.path, config.checkpoint)
    step = int(json.loads((checkpoint / "live_values.json").read_text())["num_timesteps"])
    check_env(parent.config.env)
    name, run_dir = _fork_dir(config, parent)
    settings = config.onto(parent.config, run_name=name, runs_root=str(parent.path.parent),
                           resume=str(checkpoint),
                           timesteps=config.timesteps or parent.config.timesteps)
    lineage = ForkLineage(str(parent.path.resolve()), str(checkpoint.resolve()), step,
                          dict(config.values))
    from .registry import Registry
    from .sb3.replay import StartValuesCallback  # SB3: only once the fork is known to start
    from .train import train

    registry = Registry()
    note = Lineage(fork=lineage).to_data()
    start = StartValuesCallback(registry, config.values, source=FORK_SOURCE, note=note)
    with _removed_if_refused(run_dir):
        model = train(settings, registry=registry, callbacks=[start], lineage=note)
    return model, run_dir


@contextlib.contextmanager
def _removed_if_refused(run_dir: Path) -> Iterator[None]:
    """Remove ``run_dir`` again if the fork is refused before it trained anything (a name or
    value the run refuses, data it cannot load): it was made by this call."""
    try:
        yield
    except LiveTuneError:
        if run_dir.is_dir() and not (run_dir / "checkpoints").exists():
            shutil.rmtree(run_dir)
        raise


def _fork_dir(config: ForkConfig, parent: OriginalRun) -> tuple[str, Path]:
    """The fork's run name and directory, next to the parent's (an existing one refused)."""
    name = config.run_name or f"{parent.path.name}-fork-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = parent.path.parent / name
    if run_dir.exists():
        raise ReplayError(f"the run directory {run_dir} already exists; pick another "
                          "--run-name")
    return name, run_dir


def find_vision_checkpoint(parent: Path, given: str) -> Path:
    """``given`` as a checkpoint file of the ``train-vision`` run ``parent``: a path, or a
    tag (``epoch_3``, ``step_120``, ``last``) under ``parent/checkpoints``; ``last.pt`` is
    followed to the file it names.

    :raises ReplayError: no such checkpoint, or one of another run.
    """
    path = Path(given)
    if not path.is_file():
        path = parent / "checkpoints" / (given if given.endswith(".pt") else f"{given}.pt")
    if not path.is_file():
        tags = sorted(p.stem for p in (parent / "checkpoints").glob("*.pt"))
        raise ReplayError(f"{given} is not a checkpoint of {parent}; its checkpoints: "
                          f"{', '.join(tags) or 'none'}")
    path = path.resolve()
    if path.parent.parent != parent.resolve():
        raise ReplayError(f"{path} is a checkpoint of another run than {parent}: fork the run "
                          "it belongs to")
    return path


def _fork_vision(config: ForkConfig, parent: OriginalRun) -> tuple[Any, Path]:
    """:func:`fork` of a ``train-vision`` run: the fork's Trainer resumes from the
    checkpoint in a new run directory and sets ``config.values`` when training starts."""
    from .vision.config import VisionConfig

    assert isinstance(parent.config, VisionConfig)
    if config.timesteps is not None:
        raise ReplayError(f"--timesteps is the budget of a livetune train fork; {parent.path} "
                          "is a train-vision run: give its budget with --epochs")
    checkpoint = find_vision_checkpoint(parent.path, config.checkpoint)
    from .registry import Registry
    from .vision.checkpoint import load_checkpoint
    from .vision.replay import StartValues
    from .vision.train import Trainer

    step = int(load_checkpoint(checkpoint)["position"]["step"])
    name, run_dir = _fork_dir(config, parent)
    settings = config.onto(parent.config, run_name=name, runs_root=str(parent.path.parent),
                           resume=str(checkpoint), set_values={},
                           epochs=config.epochs or parent.config.epochs)
    lineage = ForkLineage(str(parent.path.resolve()), str(checkpoint), step,
                          dict(config.values))
    registry = Registry()
    note = Lineage(fork=lineage).to_data()
    start = StartValues(registry, config.values, source=FORK_SOURCE, note=note)
    with _removed_if_refused(run_dir):
        try:
            trainer = Trainer(settings, registry=registry, callbacks=[start], lineage=note)
        except ValueError as exc:  # the data, most often
            raise ReplayError(f"the fork cannot start: {exc}") from None
        trainer.run()
    return trainer.model, run_dir


def add_parser(sub: Any) -> None:
    """Add ``fork`` to the ``livetune`` subcommands."""
    p = sub.add_parser("fork", help="start a new run from a checkpoint of an old one, with "
                                    "changed values",
                       description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("run_dir", metavar="RUN_DIR", help="the parent run (runs/<name>)")
    p.add_argument("--from", dest="checkpoint", required=True, metavar="CHECKPOINT",
                   help="its checkpoint: runs/<name>/checkpoints/<tag>, or the tag "
                        "(train-vision: <tag>.pt, or the tag)")
    add_options(p, ForkConfig)
    add_token_file(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from .tokens import token_from

    config = from_args(ForkConfig, args, run_dir=args.run_dir, checkpoint=args.checkpoint,
                       token=token_from(None, args.token_file))
    try:
        _, run_dir = fork(config)
    except LiveTuneError as exc:
        raise SystemExit(f"livetune: error: {exc}") from None
    print(f"livetune: fork of {config.run_dir} from {config.checkpoint}: run directory "
          f"{run_dir}", flush=True)
    return 0
