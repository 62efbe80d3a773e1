"""Live-tunable torchvision VGG training: models, data, live knobs, DDP sync, the loop.

Importing this package does not import torch (``livetune`` must start fast); the names below
are loaded on first use. Modules:

* :mod:`.models` - VGG11/13/16/19 (with or without batch norm), small-image head;
* :mod:`.data` - CIFAR-100, TinyImageNet, ImageNet (ImageFolder), FakeData, a synthetic set;
* :mod:`.sampler` - a batch sampler whose batch size is live;
* :mod:`.schedule` - LR schedules as a factor of the live base rate;
* :mod:`.live` - the knobs and triggers, applied from one snapshot;
* :mod:`.distributed` - every DDP rank applies each change at the same iteration;
* :mod:`.checkpoint` - checkpoints with optimizer state and live values;
* :mod:`.config` - ``VisionConfig``, the run's settings and the command's flags (no torch);
* :mod:`.train` - the training loop (``Trainer``, in named phases); :mod:`.cli` -
  ``livetune train-vision``.

Example::

    >>> from livetune_rl.vision import VisionConfig, train
    >>> train(VisionConfig(dataset="fake", arch="vgg11", width=0.25, epochs=1))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "VisionConfig": "config",
    "TrainResult": "train",
    "Trainer": "train",
    "train": "train",
    "build_vgg": "models",
    "set_dropout": "models",
    "build_datasets": "data",
    "TinyImageNet": "data",
    "SyntheticPatterns": "data",
    "LiveBatchSampler": "sampler",
    "LRSchedule": "schedule",
    "LiveControl": "live",
    "KnobTargets": "live",
    "ControlSync": "distributed",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        # importing the submodule ``train`` binds it as this package's attribute ``train``,
        # which would shadow the function of that name from then on: bind the names instead
        globals().update({n: getattr(module, n) for n, m in _LAZY.items() if m == _LAZY[name]})
        return getattr(module, name)
    raise AttributeError(f"module 'livetune_rl.vision' has no attribute {name!r}")
