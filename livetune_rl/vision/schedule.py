"""Learning-rate schedules as a factor of a live base rate, and the composition rule.

The rule: **the optimizer's rate is the live base rate times the schedule's factor**::

    param_group["lr"] = learning_rate (live) * factor(epoch)

The schedule is torch's ``LambdaLR`` over a :class:`LRSchedule` factor. ``LambdaLR`` keeps the
base rate in ``scheduler.base_lrs`` and ``param_group["initial_lr"]``; a live ``learning_rate``
change rewrites both (:func:`set_base_lr`) and the current rate at once, so the schedule keeps
its shape and position and is rescaled from the next step on. ``lr_drop`` multiplies the base
rate, so it rescales the rest of the schedule the same way. The scheduler steps once per epoch.

Example::

    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, LRSchedule("step", step_size=1, gamma=0.5))
    >>> opt.step(); sched.step(); opt.param_groups[0]["lr"]
    0.05
    >>> set_base_lr(opt, sched, 1.0)
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

SCHEDULES = ("constant", "step", "multistep", "cosine")


class LRSchedule:
    """The factor that multiplies the live base rate at ``epoch`` (picklable, checkpointed).

    Args:
        kind: ``constant`` (1), ``step`` (``gamma ** (epoch // step_size)``), ``multistep``
            (``gamma ** #milestones passed``) or ``cosine`` (half cosine from 1 to 0 over
            ``epochs``).
        warmup_epochs: linear warm-up from ``1 / (warmup_epochs + 1)`` to 1 first.
    """

    def __init__(self, kind: str = "constant", *, epochs: int = 1, step_size: int = 30,
                 gamma: float = 0.1, milestones: Sequence[int] = (),
                 warmup_epochs: int = 0) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
        self.kind = kind
        self.epochs = max(1, int(epochs))
        self.step_size = max(1, int(step_size))
        self.gamma = float(gamma)
        self.milestones = sorted(int(m) for m in milestones)
        self.warmup_epochs = max(0, int(warmup_epochs))

    def __call__(self, epoch: int) -> float:
        warm = 1.0
        if epoch < self.warmup_epochs:
            warm = (epoch + 1) / (self.warmup_epochs + 1)
        if self.kind == "step":
            return warm * self.gamma ** (epoch // self.step_size)
        if self.kind == "multistep":
            return warm * self.gamma ** sum(epoch >= m for m in self.milestones)
        if self.kind == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * min(epoch, self.epochs) / self.epochs))
        return warm

    def __repr__(self) -> str:
        return f"LRSchedule({self.kind!r}, epochs={self.epochs})"


def schedule_factor(scheduler: Any, index: int = 0) -> float:
    """The factor ``scheduler`` applies now to param group ``index`` (1.0 without one)."""
    if scheduler is None:
        return 1.0
    return float(scheduler.lr_lambdas[index](scheduler.last_epoch))


def set_base_lr(optimizer: Any, scheduler: Any, lr: float) -> float:
    """Make ``lr`` the base rate of every param group, in place; returns the rate in effect.

    The optimizer's state (momentum buffers, Adam moments) is untouched.
    """
    in_effect = lr
    for i, group in enumerate(optimizer.param_groups):
        in_effect = lr * schedule_factor(scheduler, i)
        group["lr"] = in_effect
        if scheduler is not None:
            group["initial_lr"] = lr
            scheduler.base_lrs[i] = lr
            scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
    return in_effect
