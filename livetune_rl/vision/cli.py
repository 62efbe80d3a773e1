"""The ``train-vision`` command: argparse only here; torch is imported when the command runs.

Two ways in, same options:

* ``livetune train-vision ...`` (the main ``livetune`` command adds it with :func:`add_parser`);
* ``python -m livetune_rl.vision.cli ...``, which is what ``torchrun`` launches for DDP.

Examples::

    livetune train-vision --dataset cifar100 --data-root ~/data --arch vgg16_bn --epochs 30
    livetune train-vision --dataset fake --arch vgg11 --width 0.25 --epochs 2   # no data needed
    torchrun --standalone --nproc-per-node 2 -m livetune_rl.vision.cli --dataset fake \\
        --arch vgg11 --width 0.25
    # another terminal:
    livetune set learning_rate 0.01 batch_size=128
    livetune fire lr_drop
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..flags import add_options, from_args
from ..tokens import add_token_file, token_from
from ..values import LiveTuneError
from .config import RUN, VisionConfig

DESCRIPTION = ("train a torchvision VGG classifier with live knobs (learning_rate, momentum, "
               "weight_decay, batch_size, dropout) and triggers (checkpoint, evaluate, stop, "
               "lr_drop); DDP under torchrun")


def _add_options(p: argparse.ArgumentParser) -> None:
    """A flag per :class:`VisionConfig` option, plus what only the command has: how the
    token is given (the config holds the token itself) and the phase file."""
    run = add_options(p, VisionConfig)[RUN]
    add_token_file(run)
    run.add_argument("--token", default=None, help=argparse.SUPPRESS)  # refused: ps shows it
    run.add_argument("--phase-file", default=None,
                     help="append start-up phase timestamps as JSON lines (restart costs)")


def add_parser(subparsers: Any, common: argparse.ArgumentParser | None = None) -> None:
    """Add ``train-vision`` to the ``livetune`` subcommands (``common`` is not needed).

    Example::

        >>> parser = argparse.ArgumentParser(prog="livetune")
        >>> add_parser(parser.add_subparsers(dest="command"), None)
        >>> parser.parse_args(["train-vision", "--arch", "vgg16"]).arch
        'vgg16'
    """
    p = subparsers.add_parser("train-vision", help="train a VGG classifier with live knobs",
                              description=DESCRIPTION)
    _add_options(p)
    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    """The standalone parser of ``python -m livetune_rl.vision.cli`` (torchrun's entry)."""
    p = argparse.ArgumentParser(prog="python -m livetune_rl.vision.cli", description=DESCRIPTION)
    _add_options(p)
    p.set_defaults(func=run)
    return p


def _config(args: argparse.Namespace) -> VisionConfig:
    return from_args(VisionConfig, args)


def run(args: argparse.Namespace) -> int:
    """Run the command described by ``args``; returns the exit code."""
    phase_file = getattr(args, "phase_file", None)

    def phase(name: str) -> None:
        if phase_file:
            with open(phase_file, "a", encoding="utf-8") as out:
                out.write(json.dumps({"phase": name, "t": time.time(),
                                      "cpu": time.process_time()}) + "\n")

    phase("main")
    from .distributed import is_distributed
    from .train import distributed_cleanup, train

    phase("imports")
    if getattr(args, "token", None) is not None:
        print("livetune: error: --token would show the token to every user of this machine "
              "(ps, /proc) for as long as training runs; put it in a file (chmod 600) and "
              "pass --token-file FILE, or set $LIVETUNE_TOKEN", file=sys.stderr)
        return 2
    try:
        config = _config(args)
        config.token = token_from(None, getattr(args, "token_file", None))
    except (TypeError, ValueError, LiveTuneError) as exc:
        print(f"livetune: error: {exc}", file=sys.stderr)
        return 2
    with distributed_cleanup():
        try:
            result = train(config, phase=phase)
        except (FileNotFoundError, ValueError, LiveTuneError) as exc:
            print(f"livetune: error: {exc}", file=sys.stderr)
            return 1
        if is_distributed():
            import torch.distributed as dist

            dist.barrier()
    return 0 if result.stopped in ("completed", "stop", "max_steps") else 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m livetune_rl.vision.cli``."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
